-- PostgreSQL schema of the attrition database, equal to the Alembic migrations at head.
-- Alembic is the source of truth; tests/test_db.py fails when this file drifts from it.
-- Regenerate: pg_dump --schema-only --no-owner --no-privileges --no-comments of a migrated DB.

CREATE FUNCTION public.predictions_after_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO '$user', 'public'
    AS $$
        BEGIN
        
    INSERT INTO prediction_rollups AS r
        (dimension, value, day, model_tag, slot, count, positives, probability_sum)
    SELECT g.dimension, g.value, CAST(g.created_at AT TIME ZONE 'UTC' AS DATE), g.model_tag,
           CAST(mod(txid_current(), 8) AS SMALLINT),
           - count(*), - sum(g.prediction), - sum(g.probability)
    FROM (SELECT 'departement' AS dimension, p.input ->> 'departement' AS value, p.* FROM old_rows p UNION ALL SELECT 'poste' AS dimension, p.input ->> 'poste' AS value, p.* FROM old_rows p UNION ALL SELECT 'genre' AS dimension, p.input ->> 'genre' AS value, p.* FROM old_rows p UNION ALL SELECT 'statut_marital' AS dimension, p.input ->> 'statut_marital' AS value, p.* FROM old_rows p UNION ALL SELECT 'age_band' AS dimension, CASE WHEN CAST(p.input ->> 'age' AS INTEGER) < 30 THEN '<30' WHEN CAST(p.input ->> 'age' AS INTEGER) < 45 THEN '30-44' ELSE '>=45' END AS value, p.* FROM old_rows p UNION ALL SELECT 'day' AS dimension, CAST(CAST(p.created_at AT TIME ZONE 'UTC' AS DATE) AS TEXT) AS value, p.* FROM old_rows p) g
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (dimension, value, day, model_tag, slot) DO UPDATE
    SET count = r.count + EXCLUDED.count, positives = r.positives + EXCLUDED.positives,
        probability_sum = r.probability_sum + EXCLUDED.probability_sum;
    
        
    INSERT INTO latest_predictions AS l (employee_id, model_tag, prediction_id, created_at, probability, prediction, threshold, departement, poste, band, input)
    SELECT DISTINCT ON (p.employee_id, p.model_tag) p.employee_id, p.model_tag, p.id, p.created_at, p.probability, p.prediction, p.threshold, p.input ->> 'departement', p.input ->> 'poste', CASE WHEN p.probability >= GREATEST(p.threshold, 0.5) THEN 'high' WHEN p.probability >= p.threshold THEN 'medium' ELSE 'low' END, p.input FROM predictions p
    WHERE (p.employee_id, p.model_tag) IN (
        SELECT l.employee_id, l.model_tag FROM latest_predictions l JOIN old_rows o ON l.prediction_id = o.id
    )
    ORDER BY p.employee_id, p.model_tag, p.created_at DESC, p.id DESC
    ON CONFLICT (employee_id, model_tag) DO UPDATE SET prediction_id = EXCLUDED.prediction_id, created_at = EXCLUDED.created_at, probability = EXCLUDED.probability, prediction = EXCLUDED.prediction, threshold = EXCLUDED.threshold, departement = EXCLUDED.departement, poste = EXCLUDED.poste, band = EXCLUDED.band, input = EXCLUDED.input;
    DELETE FROM latest_predictions l USING old_rows o WHERE l.prediction_id = o.id;
    
        
    INSERT INTO latest_monthly_predictions AS l (employee_id, model_tag, month, prediction_id, created_at, probability, prediction, threshold)
    SELECT DISTINCT ON (p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM')) p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), p.id, p.created_at, p.probability, p.prediction, p.threshold FROM predictions p
    WHERE (p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM')) IN (
        SELECT l.employee_id, l.model_tag, l.month FROM latest_monthly_predictions l JOIN old_rows o ON l.prediction_id = o.id
    )
    ORDER BY p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), p.created_at DESC, p.id DESC
    ON CONFLICT (employee_id, model_tag, month) DO UPDATE SET prediction_id = EXCLUDED.prediction_id, created_at = EXCLUDED.created_at, probability = EXCLUDED.probability, prediction = EXCLUDED.prediction, threshold = EXCLUDED.threshold;
    DELETE FROM latest_monthly_predictions l USING old_rows o WHERE l.prediction_id = o.id;
    
        RETURN NULL;
        END $$;

CREATE FUNCTION public.predictions_after_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO '$user', 'public'
    AS $$
        BEGIN
        
    INSERT INTO prediction_rollups AS r
        (dimension, value, day, model_tag, slot, count, positives, probability_sum)
    SELECT g.dimension, g.value, CAST(g.created_at AT TIME ZONE 'UTC' AS DATE), g.model_tag,
           CAST(mod(txid_current(), 8) AS SMALLINT),
            count(*),  sum(g.prediction),  sum(g.probability)
    FROM (SELECT 'departement' AS dimension, p.input ->> 'departement' AS value, p.* FROM new_rows p UNION ALL SELECT 'poste' AS dimension, p.input ->> 'poste' AS value, p.* FROM new_rows p UNION ALL SELECT 'genre' AS dimension, p.input ->> 'genre' AS value, p.* FROM new_rows p UNION ALL SELECT 'statut_marital' AS dimension, p.input ->> 'statut_marital' AS value, p.* FROM new_rows p UNION ALL SELECT 'age_band' AS dimension, CASE WHEN CAST(p.input ->> 'age' AS INTEGER) < 30 THEN '<30' WHEN CAST(p.input ->> 'age' AS INTEGER) < 45 THEN '30-44' ELSE '>=45' END AS value, p.* FROM new_rows p UNION ALL SELECT 'day' AS dimension, CAST(CAST(p.created_at AT TIME ZONE 'UTC' AS DATE) AS TEXT) AS value, p.* FROM new_rows p) g
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (dimension, value, day, model_tag, slot) DO UPDATE
    SET count = r.count + EXCLUDED.count, positives = r.positives + EXCLUDED.positives,
        probability_sum = r.probability_sum + EXCLUDED.probability_sum;
    
        
    INSERT INTO latest_predictions AS l (employee_id, model_tag, prediction_id, created_at, probability, prediction, threshold, departement, poste, band, input)
    SELECT DISTINCT ON (p.employee_id, p.model_tag) p.employee_id, p.model_tag, p.id, p.created_at, p.probability, p.prediction, p.threshold, p.input ->> 'departement', p.input ->> 'poste', CASE WHEN p.probability >= GREATEST(p.threshold, 0.5) THEN 'high' WHEN p.probability >= p.threshold THEN 'medium' ELSE 'low' END, p.input FROM new_rows p
    WHERE p.employee_id IS NOT NULL
    ORDER BY p.employee_id, p.model_tag, p.created_at DESC, p.id DESC
    ON CONFLICT (employee_id, model_tag) DO UPDATE SET prediction_id = EXCLUDED.prediction_id, created_at = EXCLUDED.created_at, probability = EXCLUDED.probability, prediction = EXCLUDED.prediction, threshold = EXCLUDED.threshold, departement = EXCLUDED.departement, poste = EXCLUDED.poste, band = EXCLUDED.band, input = EXCLUDED.input
    WHERE (l.created_at, l.prediction_id) < (EXCLUDED.created_at, EXCLUDED.prediction_id);
    
        
    INSERT INTO latest_monthly_predictions AS l (employee_id, model_tag, month, prediction_id, created_at, probability, prediction, threshold)
    SELECT DISTINCT ON (p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM')) p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), p.id, p.created_at, p.probability, p.prediction, p.threshold FROM new_rows p
    WHERE p.employee_id IS NOT NULL
    ORDER BY p.employee_id, p.model_tag, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), p.created_at DESC, p.id DESC
    ON CONFLICT (employee_id, model_tag, month) DO UPDATE SET prediction_id = EXCLUDED.prediction_id, created_at = EXCLUDED.created_at, probability = EXCLUDED.probability, prediction = EXCLUDED.prediction, threshold = EXCLUDED.threshold
    WHERE (l.created_at, l.prediction_id) < (EXCLUDED.created_at, EXCLUDED.prediction_id);
    
        RETURN NULL;
        END $$;

CREATE TABLE public.access_events (
    id integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    client character varying(64),
    route character varying(64) NOT NULL,
    query jsonb,
    employee_ids jsonb NOT NULL,
    employee_count integer NOT NULL
);

CREATE SEQUENCE public.access_events_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.access_events_id_seq OWNED BY public.access_events.id;

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);

CREATE TABLE public.api_keys (
    id integer NOT NULL,
    name character varying(64) NOT NULL,
    key_id character varying(16) NOT NULL,
    salt character varying(64) NOT NULL,
    key_hash character varying(64) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    last_used_at timestamp with time zone,
    roles character varying(64) NOT NULL
);

CREATE SEQUENCE public.api_keys_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.api_keys_id_seq OWNED BY public.api_keys.id;

CREATE TABLE public.audit_events (
    id integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    client character varying(64),
    method character varying(8) NOT NULL,
    endpoint character varying(256) NOT NULL,
    status integer NOT NULL,
    error character varying(64) NOT NULL,
    detail jsonb,
    last_seen_at timestamp with time zone,
    count integer DEFAULT 1 NOT NULL,
    client_address character varying(64)
);

CREATE SEQUENCE public.audit_events_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.audit_events_id_seq OWNED BY public.audit_events.id;

CREATE TABLE public.employees (
    id integer NOT NULL,
    features jsonb NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

CREATE TABLE public.latest_monthly_predictions (
    employee_id integer NOT NULL,
    model_tag character varying(128) NOT NULL,
    month character varying(7) NOT NULL,
    prediction_id uuid NOT NULL,
    created_at timestamp with time zone NOT NULL,
    probability double precision NOT NULL,
    prediction smallint NOT NULL,
    threshold double precision NOT NULL
);

CREATE TABLE public.latest_predictions (
    employee_id integer NOT NULL,
    model_tag character varying(128) NOT NULL,
    prediction_id uuid NOT NULL,
    created_at timestamp with time zone NOT NULL,
    probability double precision NOT NULL,
    prediction smallint NOT NULL,
    threshold double precision NOT NULL,
    departement text,
    poste text,
    band character varying(8) NOT NULL,
    input jsonb NOT NULL,
    age text GENERATED ALWAYS AS ((input ->> 'age'::text)) STORED,
    genre text GENERATED ALWAYS AS ((input ->> 'genre'::text)) STORED,
    revenu_mensuel text GENERATED ALWAYS AS ((input ->> 'revenu_mensuel'::text)) STORED,
    statut_marital text GENERATED ALWAYS AS ((input ->> 'statut_marital'::text)) STORED,
    nombre_experiences_precedentes text GENERATED ALWAYS AS ((input ->> 'nombre_experiences_precedentes'::text)) STORED,
    annee_experience_totale text GENERATED ALWAYS AS ((input ->> 'annee_experience_totale'::text)) STORED,
    annees_dans_l_entreprise text GENERATED ALWAYS AS ((input ->> 'annees_dans_l_entreprise'::text)) STORED,
    annees_dans_le_poste_actuel text GENERATED ALWAYS AS ((input ->> 'annees_dans_le_poste_actuel'::text)) STORED,
    satisfaction_employee_environnement text GENERATED ALWAYS AS ((input ->> 'satisfaction_employee_environnement'::text)) STORED,
    note_evaluation_precedente text GENERATED ALWAYS AS ((input ->> 'note_evaluation_precedente'::text)) STORED,
    niveau_hierarchique_poste text GENERATED ALWAYS AS ((input ->> 'niveau_hierarchique_poste'::text)) STORED,
    satisfaction_employee_nature_travail text GENERATED ALWAYS AS ((input ->> 'satisfaction_employee_nature_travail'::text)) STORED,
    satisfaction_employee_equipe text GENERATED ALWAYS AS ((input ->> 'satisfaction_employee_equipe'::text)) STORED,
    satisfaction_employee_equilibre_pro_perso text GENERATED ALWAYS AS ((input ->> 'satisfaction_employee_equilibre_pro_perso'::text)) STORED,
    note_evaluation_actuelle text GENERATED ALWAYS AS ((input ->> 'note_evaluation_actuelle'::text)) STORED,
    heure_supplementaires text GENERATED ALWAYS AS ((input ->> 'heure_supplementaires'::text)) STORED,
    augementation_salaire_precedente text GENERATED ALWAYS AS ((input ->> 'augementation_salaire_precedente'::text)) STORED,
    nombre_participation_pee text GENERATED ALWAYS AS ((input ->> 'nombre_participation_pee'::text)) STORED,
    nb_formations_suivies text GENERATED ALWAYS AS ((input ->> 'nb_formations_suivies'::text)) STORED,
    distance_domicile_travail text GENERATED ALWAYS AS ((input ->> 'distance_domicile_travail'::text)) STORED,
    niveau_education text GENERATED ALWAYS AS ((input ->> 'niveau_education'::text)) STORED,
    domaine_etude text GENERATED ALWAYS AS ((input ->> 'domaine_etude'::text)) STORED,
    frequence_deplacement text GENERATED ALWAYS AS ((input ->> 'frequence_deplacement'::text)) STORED,
    annees_depuis_la_derniere_promotion text GENERATED ALWAYS AS ((input ->> 'annees_depuis_la_derniere_promotion'::text)) STORED,
    annes_sous_responsable_actuel text GENERATED ALWAYS AS ((input ->> 'annes_sous_responsable_actuel'::text)) STORED
);

CREATE TABLE public.monitoring_snapshots (
    id integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    model_tag character varying(128) NOT NULL,
    drift jsonb NOT NULL,
    performance jsonb NOT NULL
);

CREATE SEQUENCE public.monitoring_snapshots_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.monitoring_snapshots_id_seq OWNED BY public.monitoring_snapshots.id;

CREATE TABLE public.outcomes (
    id integer NOT NULL,
    employee_id integer NOT NULL,
    status character varying(8) NOT NULL,
    event_date date NOT NULL,
    source character varying(64) NOT NULL,
    recorded_at timestamp with time zone NOT NULL,
    client character varying(64)
);

CREATE SEQUENCE public.outcomes_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.outcomes_id_seq OWNED BY public.outcomes.id;

CREATE TABLE public.prediction_rollups (
    id bigint NOT NULL,
    dimension character varying(16) NOT NULL,
    value text,
    day date NOT NULL,
    model_tag character varying(128) NOT NULL,
    slot smallint NOT NULL,
    count bigint NOT NULL,
    positives bigint NOT NULL,
    probability_sum double precision NOT NULL
);

CREATE SEQUENCE public.prediction_rollups_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.prediction_rollups_id_seq OWNED BY public.prediction_rollups.id;

CREATE TABLE public.predictions (
    id uuid NOT NULL,
    created_at timestamp with time zone NOT NULL,
    employee_id integer,
    input jsonb NOT NULL,
    probability double precision NOT NULL,
    prediction smallint NOT NULL,
    threshold double precision NOT NULL,
    model_tag character varying(128) NOT NULL,
    top_factors jsonb NOT NULL,
    latency_ms double precision NOT NULL,
    request_id character varying(64) NOT NULL,
    batch_id uuid NOT NULL,
    client character varying(64),
    endpoint character varying(32)
);

CREATE TABLE public.reviews (
    id uuid NOT NULL,
    prediction_id uuid NOT NULL,
    decision character varying(16) NOT NULL,
    note character varying(2000) NOT NULL,
    reviewer character varying(64) NOT NULL,
    created_at timestamp with time zone NOT NULL
);

CREATE TABLE public.scoring_switches (
    id integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    suspended boolean NOT NULL,
    reason character varying(500) NOT NULL,
    actor character varying(64) NOT NULL
);

CREATE SEQUENCE public.scoring_switches_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.scoring_switches_id_seq OWNED BY public.scoring_switches.id;

CREATE TABLE public.shadow_predictions (
    id integer NOT NULL,
    prediction_id uuid NOT NULL,
    model_tag character varying(128) NOT NULL,
    probability double precision NOT NULL,
    prediction smallint NOT NULL,
    threshold double precision NOT NULL,
    created_at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.shadow_predictions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.shadow_predictions_id_seq OWNED BY public.shadow_predictions.id;

CREATE TABLE public.ui_sessions (
    id integer NOT NULL,
    token_hash character varying(64) NOT NULL,
    key_id character varying(16) NOT NULL,
    client character varying(64) NOT NULL,
    csrf_token character varying(64) NOT NULL,
    address character varying(64),
    created_at timestamp with time zone NOT NULL,
    last_seen_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    ended_at timestamp with time zone
);

CREATE SEQUENCE public.ui_sessions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.ui_sessions_id_seq OWNED BY public.ui_sessions.id;

ALTER TABLE ONLY public.access_events ALTER COLUMN id SET DEFAULT nextval('public.access_events_id_seq'::regclass);

ALTER TABLE ONLY public.api_keys ALTER COLUMN id SET DEFAULT nextval('public.api_keys_id_seq'::regclass);

ALTER TABLE ONLY public.audit_events ALTER COLUMN id SET DEFAULT nextval('public.audit_events_id_seq'::regclass);

ALTER TABLE ONLY public.monitoring_snapshots ALTER COLUMN id SET DEFAULT nextval('public.monitoring_snapshots_id_seq'::regclass);

ALTER TABLE ONLY public.outcomes ALTER COLUMN id SET DEFAULT nextval('public.outcomes_id_seq'::regclass);

ALTER TABLE ONLY public.prediction_rollups ALTER COLUMN id SET DEFAULT nextval('public.prediction_rollups_id_seq'::regclass);

ALTER TABLE ONLY public.scoring_switches ALTER COLUMN id SET DEFAULT nextval('public.scoring_switches_id_seq'::regclass);

ALTER TABLE ONLY public.shadow_predictions ALTER COLUMN id SET DEFAULT nextval('public.shadow_predictions_id_seq'::regclass);

ALTER TABLE ONLY public.ui_sessions ALTER COLUMN id SET DEFAULT nextval('public.ui_sessions_id_seq'::regclass);

ALTER TABLE ONLY public.access_events
    ADD CONSTRAINT access_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_key_id_key UNIQUE (key_id);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_name_key UNIQUE (name);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.audit_events
    ADD CONSTRAINT audit_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.employees
    ADD CONSTRAINT employees_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.latest_monthly_predictions
    ADD CONSTRAINT latest_monthly_predictions_pkey PRIMARY KEY (employee_id, model_tag, month);

ALTER TABLE ONLY public.latest_predictions
    ADD CONSTRAINT latest_predictions_pkey PRIMARY KEY (employee_id, model_tag);

ALTER TABLE ONLY public.monitoring_snapshots
    ADD CONSTRAINT monitoring_snapshots_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outcomes
    ADD CONSTRAINT outcomes_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.prediction_rollups
    ADD CONSTRAINT prediction_rollups_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.predictions
    ADD CONSTRAINT predictions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.reviews
    ADD CONSTRAINT reviews_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.scoring_switches
    ADD CONSTRAINT scoring_switches_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.shadow_predictions
    ADD CONSTRAINT shadow_predictions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ui_sessions
    ADD CONSTRAINT ui_sessions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ui_sessions
    ADD CONSTRAINT ui_sessions_token_hash_key UNIQUE (token_hash);

ALTER TABLE ONLY public.outcomes
    ADD CONSTRAINT uq_outcomes_fact UNIQUE (employee_id, status, event_date);

CREATE INDEX ix_access_events_client ON public.access_events USING btree (client);

CREATE INDEX ix_access_events_created_at ON public.access_events USING btree (created_at);

CREATE INDEX ix_audit_events_client ON public.audit_events USING btree (client);

CREATE INDEX ix_audit_events_created_at ON public.audit_events USING btree (created_at);

CREATE INDEX ix_latest_monthly_predictions_model_created ON public.latest_monthly_predictions USING btree (model_tag, created_at);

CREATE INDEX ix_latest_predictions_model_created ON public.latest_predictions USING btree (model_tag, created_at);

CREATE INDEX ix_latest_predictions_probability ON public.latest_predictions USING btree (probability DESC, employee_id);

CREATE INDEX ix_monitoring_snapshots_created_at ON public.monitoring_snapshots USING btree (created_at);

CREATE INDEX ix_outcomes_employee_id ON public.outcomes USING btree (employee_id);

CREATE INDEX ix_predictions_anonymous_model_created ON public.predictions USING btree (model_tag, created_at) WHERE (employee_id IS NULL);

CREATE INDEX ix_predictions_batch_id ON public.predictions USING btree (batch_id);

CREATE INDEX ix_predictions_client_created ON public.predictions USING btree (client, created_at);

CREATE INDEX ix_predictions_created_at ON public.predictions USING btree (created_at);

CREATE INDEX ix_predictions_created_id ON public.predictions USING btree (created_at DESC, id);

CREATE INDEX ix_predictions_employee_created_id ON public.predictions USING btree (employee_id, created_at DESC, id);

CREATE INDEX ix_predictions_model_created ON public.predictions USING btree (model_tag, created_at);

CREATE INDEX ix_predictions_prediction_created ON public.predictions USING btree (prediction, created_at);

CREATE INDEX ix_reviews_created_at ON public.reviews USING btree (created_at);

CREATE INDEX ix_reviews_prediction_id ON public.reviews USING btree (prediction_id);

CREATE INDEX ix_scoring_switches_created_at ON public.scoring_switches USING btree (created_at);

CREATE INDEX ix_shadow_predictions_created_at ON public.shadow_predictions USING btree (created_at);

CREATE INDEX ix_shadow_predictions_model_tag ON public.shadow_predictions USING btree (model_tag);

CREATE INDEX ix_shadow_predictions_prediction_id ON public.shadow_predictions USING btree (prediction_id);

CREATE INDEX ix_ui_sessions_created_at ON public.ui_sessions USING btree (created_at);

CREATE INDEX ix_ui_sessions_key_id ON public.ui_sessions USING btree (key_id);

CREATE UNIQUE INDEX uq_prediction_rollups_key ON public.prediction_rollups USING btree (dimension, value, day, model_tag, slot) NULLS NOT DISTINCT;

CREATE TRIGGER predictions_rollups_delete AFTER DELETE ON public.predictions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.predictions_after_delete();

CREATE TRIGGER predictions_rollups_insert AFTER INSERT ON public.predictions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.predictions_after_insert();

ALTER TABLE ONLY public.outcomes
    ADD CONSTRAINT outcomes_employee_id_fkey FOREIGN KEY (employee_id) REFERENCES public.employees(id);

ALTER TABLE ONLY public.predictions
    ADD CONSTRAINT predictions_employee_id_fkey FOREIGN KEY (employee_id) REFERENCES public.employees(id);

ALTER TABLE ONLY public.reviews
    ADD CONSTRAINT reviews_prediction_id_fkey FOREIGN KEY (prediction_id) REFERENCES public.predictions(id);

ALTER TABLE ONLY public.shadow_predictions
    ADD CONSTRAINT shadow_predictions_prediction_id_fkey FOREIGN KEY (prediction_id) REFERENCES public.predictions(id);


INSERT INTO public.alembic_version (version_num) VALUES ('0010');
