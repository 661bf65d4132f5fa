#!/usr/bin/env bash
# Pipeline 'chained', exported by corral for sge on <date>.
# Run <run>; working directory <tmp>.
# One job per task and one array job per scatter (element i runs the scatter's task i);
# each job waits for the jobs it needs (qsub -hold_jid; each job script checks that the tasks it needs succeeded).
# Plain bash and the scheduler's commands suffice here; the jobs run each task with
# `python -m corral.worker`, so Corral must be installed where they run.
# Job scripts: <tmp>/pipeline.jobs; task payloads: <tmp>/.corral/work/<run>
# After the jobs ended, `corral status <run>` records their results.
set -euo pipefail
cd <tmp>/pipeline.jobs

# square: 3 tasks (square[0] .. square[2]) as one array job, at most 3 at once
jid_square=$(qsub -terse square.sh)
jid_square="${jid_square%%.*}"
echo "square: job $jid_square"

# double: 3 tasks (double[0] .. double[2]) as one array job, at most 3 at once; element i waits for element i of square (-hold_jid_ad)
jid_double=$(qsub -terse -hold_jid_ad $jid_square double.sh)
jid_double="${jid_double%%.*}"
echo "double: job $jid_double"

# total
jid_total=$(qsub -terse -hold_jid $jid_double total.sh)
jid_total="${jid_total%%.*}"
echo "total: job $jid_total"
