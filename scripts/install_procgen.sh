#!/usr/bin/env bash
# Procgen for rlfleet's procgen:<game> envs (src/rlfleet/envs/procgen.py).
#
# Run after `pip install -e ".[procgen]"` (or ".[all]"), which brings the runtime dependencies that
# resolve cleanly (cffi, imageio). Procgen itself comes from the procgen-mirror wheel (the procgen
# project has no wheel for Python 3.11), and gym3 with it. Both are installed with --no-deps: their
# metadata pins numpy < 2 and old gym, for which pip would downgrade numpy, while the native
# ProcgenGym3Env that rlfleet uses runs under numpy 2 without old gym (rlfleet.envs.procgen loads
# procgen.env without running procgen/__init__.py, which imports gym only for gym.make ids).
# A pip extra cannot say --no-deps, hence this script. The last line checks that a game steps.
set -euo pipefail
pip install --no-deps procgen-mirror==0.10.7 gym3==0.3.3
python -c "
from rlfleet.envs.procgen import ProcgenEnv
env = ProcgenEnv('procgen:coinrun', {'distribution_mode': 'easy', 'num_levels': 1})
obs, _ = env.reset(seed=0)
env.step(0)
env.close()
print('procgen: ok, observations', obs.shape, obs.dtype)
"
