#!/usr/bin/env bash
# Writes the calibration and evaluation texts used by `make eval` into
# ${1:-build/texts}. Both come from Debian packages (installed here if
# missing) and are different texts:
#   calib.txt: the fortune-mod cookie files (package fortunes-min, BSD
#              licence): quotes, jokes and riddles.
#   eval.txt:  the King James Bible, Genesis 1-20 (package bible-kjv,
#              public domain), verse references stripped.
# and two texts of genres neither the calibration nor the default
# evaluation text has (for checking that a scheme holds on text it was not
# tuned on), from files every Debian 12 system has:
#   eval-legal.txt: the GNU GPL version 3 (base-files).
#   eval-code.txt:  Python source, the standard library's argparse module
#                   (python3.11; PSF licence).
#   eval-changelog.txt: technical release notes, apt's changelog (apt,
#                   GPL-2+).
set -euo pipefail
out="${1:-build/texts}"
mkdir -p "$out"
need=()
dpkg-query -W -f='${Status}' fortunes-min 2>/dev/null | grep -q "ok installed" || need+=(fortunes-min)
dpkg-query -W -f='${Status}' bible-kjv 2>/dev/null | grep -q "ok installed" || need+=(bible-kjv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
f=/usr/share/games/fortunes
# Cookie files separate entries with lines holding a single '%'.
grep -hv '^%$' "$f/fortunes" "$f/literature" "$f/riddles" > "$out/calib.txt"
bible -f gen1:1-gen20:18 | sed -E 's/^[A-Za-z0-9]+:[0-9]+ //' > "$out/eval.txt"
cp /usr/share/common-licenses/GPL-3 "$out/eval-legal.txt"
cp "$(/usr/bin/python3 -c 'import argparse; print(argparse.__file__)')" "$out/eval-code.txt"
zcat /usr/share/doc/apt/changelog.gz > "$out/eval-changelog.txt"
echo "texts: $(wc -w < "$out/calib.txt") words calibration, $(wc -w < "$out/eval.txt") words evaluation (+ legal, code, changelog) in $out"
