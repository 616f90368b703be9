#!/bin/sh
# A synthetic bench cell for smoke tests and for trying the bench/scaling tools without a GPU:
# it writes the metrics a real cell reports, computed from a known law instead of training.
#   eval_loss = 1.7 + 40 / N^0.34 + 60 / D^0.30         (N non-embedding parameters, D tokens)
#   subject k: mean_r = 1 - eval_loss / 20 - 0.01 k,  top10_r = 1 - eval_loss / 40
# Usage: toy-cell.sh N D PRECISION SUBJECTS(comma-separated) OUT.json
set -eu
[ $# -eq 5 ] || { echo "usage: $0 N D PRECISION SUBJECTS OUT.json" >&2; exit 2; }
awk -v n="$1" -v d="$2" -v prec="$3" -v subj="$4" 'BEGIN {
  if (n <= 0 || d <= 0) { print "N and D must be positive" > "/dev/stderr"; exit 1 }
  L = 1.7 + 40 / n ^ 0.34 + 60 / d ^ 0.30
  printf "{\"train_loss\": %.9g, \"eval_loss\": %.9g, \"device\": \"cpu\", \"precision_seen\": \"%s\", \"subjects\": {", L * 0.99, L, prec
  k = (subj == "") ? 0 : split(subj, s, ",")
  for (i = 1; i <= k; i++)
    printf "%s\"%s\": {\"mean_r\": %.9g, \"top10_r\": %.9g}", (i > 1 ? ", " : ""), s[i], 1 - L / 20 - 0.01 * i, 1 - L / 40
  printf "}}\n"
}' > "$5.tmp"
mv "$5.tmp" "$5"
