#!/usr/bin/env bash
# Read the models file (default deploy/models.env): the models a Bento ships, as a reviewed
# change. It may set ATTRITION_MODEL_TAG (the champion) and ATTRITION_SHADOW_MODEL_TAG (a
# challenger scored in its shadow), one NAME=value a line; `#` starts a comment; empty = unset.
#   scripts/models.sh env [FILE]   arguments for env(1): NAME=value for each variable the file
#                                  sets, -u NAME for the others (`make bento` builds with them)
#   scripts/models.sh tags [FILE]  the tags to import, the champion first (CD); fails unless the
#                                  champion is pinned (name:version, not latest)
# Exit 0 done, 1 a problem in the file (named on stderr), 2 wrong usage.
set -euo pipefail
usage="usage: scripts/models.sh env|tags [FILE]"
command=${1:?$usage}
file=${2:-deploy/models.env}
names=(ATTRITION_MODEL_TAG ATTRITION_SHADOW_MODEL_TAG)
declare -A value=()
number=0
while IFS= read -r line || [ -n "$line" ]; do
  number=$((number + 1))
  line="${line%%#*}"
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [ -z "$line" ] && continue
  name="${line%%=*}"
  if [ "$name" = "$line" ] || [[ " ${names[*]} " != *" $name "* ]]; then
    echo "$file:$number: expected ATTRITION_MODEL_TAG=... or ATTRITION_SHADOW_MODEL_TAG=..." >&2
    exit 1
  fi
  tag="${line#*=}"
  # A BentoML tag (name[:version]): nothing a shell or env(1) would split or expand.
  if [ -n "$tag" ] && ! [[ "$tag" =~ ^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$ ]]; then
    echo "$file:$number: $name: $tag is not a model tag (name:version)" >&2
    exit 1
  fi
  value[$name]=$tag
done <"$file"

champion=${value[ATTRITION_MODEL_TAG]:-}
shadow=${value[ATTRITION_SHADOW_MODEL_TAG]:-}
case "$command" in
  env)
    for name in "${names[@]}"; do
      if [ -n "${value[$name]:-}" ]; then printf "%s=%s\n" "$name" "${value[$name]}"; else printf -- "-u %s\n" "$name"; fi
    done
    ;;
  tags)
    version="${champion#*:}"
    if [ -z "$champion" ] || [ "$version" = "$champion" ] || [ "$version" = latest ]; then
      echo "$file: ATTRITION_MODEL_TAG must name the champion's version (name:version)," \
        "not '${champion}': see docs/RUNBOOK.md" >&2
      exit 1
    fi
    if [ "$shadow" = "$champion" ]; then
      echo "$file: the shadow model must differ from the champion" >&2
      exit 1
    fi
    echo "$champion"
    if [ -n "$shadow" ]; then echo "$shadow"; fi
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
