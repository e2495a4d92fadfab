import shutil

import pandas as pd
import pytest

from tests.support.commands import run_cli
from training.contract import SOURCES, TARGET
from training.extracts import ExtractError, load_extracts
from training.generator import generate_extracts

SIRH, EVAL, SONDAGE = (SOURCES[s][0] for s in ("sirh", "eval", "sondage"))


@pytest.fixture
def extracts(tmp_path, generated_dir):
    folder = tmp_path / "extracts"
    shutil.copytree(generated_dir, folder)
    return folder


def _edit(folder, filename, change):
    path = folder / filename
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame).to_csv(path, index=False)


def test_merge_cleans_and_labels(extracts):
    dataset = load_extracts(extracts, generated=True)
    raw = pd.read_csv(extracts / SONDAGE, dtype=str)
    assert len(dataset.employees) == len(raw)
    assert dataset.target.sum() == (raw[TARGET] == "Oui").sum()
    frame = dataset.frame
    assert frame["augementation_salaire_precedente"].dtype.kind == "f"
    assert set(frame["heure_supplementaires"]) <= {True, False}
    # the three files were joined on the key, not on the row position
    assert (frame["eval_number"] == "E_" + frame["id_employee"].astype(str)).all()
    assert dataset.describe()["generated"] is True


def test_rows_join_on_key_not_position(extracts):
    _edit(extracts, EVAL, lambda f: f.iloc[::-1])
    reversed_eval = load_extracts(extracts).frame
    assert (reversed_eval["eval_number"] == "E_" + reversed_eval["id_employee"].astype(str)).all()


def test_missing_file_is_named(extracts):
    (extracts / EVAL).unlink()
    with pytest.raises(ExtractError, match=f"{EVAL}: file not found"):
        load_extracts(extracts)


def test_missing_column_is_named(extracts):
    _edit(extracts, SIRH, lambda f: f.drop(columns=["revenu_mensuel"]))
    with pytest.raises(ExtractError, match=f"{SIRH}: missing column.*revenu_mensuel"):
        load_extracts(extracts)


def test_duplicate_key_is_named(extracts):
    _edit(extracts, SONDAGE, lambda f: pd.concat([f, f.iloc[[0]]]))
    with pytest.raises(ExtractError, match=f"{SONDAGE}: column code_sondage repeats"):
        load_extracts(extracts)


def test_keys_that_do_not_join_are_named(extracts):
    _edit(
        extracts,
        EVAL,
        lambda f: f.assign(eval_number=f["eval_number"].where(f.index != 3, "E_999999")),
    )
    with pytest.raises(ExtractError, match=f"{EVAL}: column eval_number does not join.*999999"):
        load_extracts(extracts)


def test_bad_value_names_file_column_and_employee(extracts):
    _edit(extracts, EVAL, lambda f: f.assign(heure_supplementaires="Peut-être"))
    with pytest.raises(ExtractError, match=f"{EVAL}: column heure_supplementaires, employee"):
        load_extracts(extracts)


def test_bad_target_is_named(extracts):
    _edit(extracts, SONDAGE, lambda f: f.assign(**{TARGET: "Maybe"}))
    with pytest.raises(ExtractError, match=f"{SONDAGE}: column {TARGET}"):
        load_extracts(extracts)


def test_cli_reports_loader_errors_without_traceback(extracts):
    (extracts / SIRH).unlink()
    run = run_cli("train", "--data-dir", str(extracts))
    assert run.returncode == 2
    assert f"{SIRH}: file not found" in run.stderr
    assert "Traceback" not in run.stderr


def test_generator_matches_the_extract_schema_and_is_deterministic():
    first, second = generate_extracts(200, seed=7), generate_extracts(200, seed=7)
    for source, (_, _key, model) in SOURCES.items():
        expected = set(model.model_fields) | ({TARGET} if source == "sondage" else set())
        assert set(first[source].columns) == expected
        pd.testing.assert_frame_equal(first[source], second[source])
    assert first["eval"]["eval_number"].str.fullmatch(r"E_\d+").all()
    assert first["sondage"]["code_sondage"].str.fullmatch(r"\d{6}").all()
    assert first["eval"]["augementation_salaire_precedente"].str.fullmatch(r"\d+ %").all()
    assert set(first["eval"]["heure_supplementaires"]) == {"Oui", "Non"}
    assert not first["sirh"].equals(generate_extracts(200, seed=8)["sirh"])


def test_generated_leavers_are_a_minority_large_enough_to_learn_from(generated_dir):
    """The generator's logistic model, not its schema: leavers are the minority class, as in
    the real extracts, and numerous enough for every cross-validation fold."""
    assert 0.1 < load_extracts(generated_dir, generated=True).positive_rate < 0.4
