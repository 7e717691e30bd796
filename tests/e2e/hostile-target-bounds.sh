#!/bin/bash
# The second half of tests/e2e/hostile-target.sh, in a VM of its own (see there): the faults
# with a target that then refuses every login (the session fails within replacement_timeout,
# the I/O fails, nothing hangs), stop during a recovery and during the error handler's task
# management, a session logout answered late, and added connections that drop or go silent
# (the holds of kernel/session/hold.rs).
#   tests/vm/run --debug tests/e2e/hostile-target-bounds.sh [MODE...] is hostile-target.sh.
# vm-kernel: debug
# vm-args: --timeout 1800
# vm-seconds: 210
# vm-cpu: light
HOSTILE_PART=bounds exec bash "$REPO/tests/e2e/hostile-target.sh" "$@"
