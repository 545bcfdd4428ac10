#!/usr/bin/env bash
# Known-vulnerability check of the locked dependencies with pip-audit.
# Fails when pip-audit reports a vulnerable package. When the package index this machine
# reaches does not serve vulnerability data (a registry mirror without PyPI's JSON API),
# pip-audit can audit nothing: that is printed loudly, with the count, instead of being
# passed off as "no known vulnerabilities".
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(.venv/bin/pip-audit --local --progress-spinner off --format json 2>/dev/null)
status=$?
summary=$(printf '%s' "$out" | .venv/bin/python -c '
import json, sys
data = json.load(sys.stdin)
deps = data.get("dependencies", [])
vulns = [(d["name"], d["version"], v["id"]) for d in deps for v in d.get("vulns", [])]
skipped = [d for d in deps if d.get("skip_reason")]
audited = len(deps) - len(skipped)
for name, version, vid in vulns:
    print(f"VULNERABLE {name} {version}: {vid}")
print(f"audited {audited} of {len(deps)} packages; {len(vulns)} known vulnerabilities")
if deps and not audited:
    print("WARNING: no package could be audited: the index reachable from here serves no "
          "vulnerability data (run scripts/audit.sh where pypi.org is reachable)")
sys.exit(1 if vulns else 0)
' )
parse=$?
echo "$summary"
if [ "$parse" -ne 0 ]; then exit 1; fi
if [ "$status" -ne 0 ] && ! grep -q "audited" <<<"$summary"; then exit "$status"; fi
exit 0
