#!/usr/bin/env bash
# Pipeline 'chain', exported by corral for sge on <date>.
# Run <run>; working directory <tmp>.
# One job per task and one array job per scatter (element i runs the scatter's task i);
# each job waits for the jobs it needs (qsub -hold_jid; each job script checks that the tasks it needs succeeded).
# Plain bash and the scheduler's commands suffice here; the jobs run each task with
# `python -m corral.worker`, so Corral must be installed where they run.
# Job scripts: <tmp>/pipeline.jobs; task payloads: <tmp>/.corral/work/<run>
# After the jobs ended, `corral status <run>` records their results.
set -euo pipefail
cd <tmp>/pipeline.jobs

# offset
jid_offset=$(qsub -terse offset.sh)
jid_offset="${jid_offset%%.*}"
echo "offset: job $jid_offset"

# copy
jid_copy=$(qsub -terse -hold_jid $jid_offset copy.sh)
jid_copy="${jid_copy%%.*}"
echo "copy: job $jid_copy"

# square: 3 tasks (square[0] .. square[2]) as one array job, at most 3 at once
jid_square=$(qsub -terse -hold_jid $jid_offset square.sh)
jid_square="${jid_square%%.*}"
echo "square: job $jid_square"

# total
jid_total=$(qsub -terse -hold_jid $jid_square total.sh)
jid_total="${jid_total%%.*}"
echo "total: job $jid_total"
