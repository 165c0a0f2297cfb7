"""Observation memory of an Atari replay that stores each frame once (``frame_stack=4``).

Fills a replay with ``[4,84,84]`` uint8 frame stacks built as FrameStackObservation builds them
(episodes of ``--episode-len`` steps, alternately terminated and truncated) and prints the
bytes its stored observations take per transition, in units of one 84x84 frame: the frame
store (``nbytes`` of its arrays) plus the final observations kept whole for truncations.

    python benchmarks/replay_memory.py --size 100000
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.samplers.sampler import AgentSamples, EnvSamples, Samples

FRAME = (84, 84)


def batches(n_steps: int, batch_T: int, k: int, episode_len: int) -> Iterator[Samples]:
    """``[batch_T, 1]`` Samples; frame ``i`` is filled with ``i % 256``."""
    step_in_episode, episode, frame_id = 0, 0, 0
    stack = np.zeros((k,) + FRAME, np.uint8)
    for _ in range(n_steps // batch_T):
        obs = np.zeros((batch_T, 1, k) + FRAME, np.uint8)
        final = np.zeros_like(obs)
        terminated, truncated = np.zeros((batch_T, 1), bool), np.zeros((batch_T, 1), bool)
        for t in range(batch_T):
            obs[t, 0] = stack
            frame_id += 1
            following = np.concatenate([stack[1:], np.full((1,) + FRAME, frame_id % 256, np.uint8)])
            step_in_episode += 1
            if step_in_episode == episode_len:
                terminated[t, 0], truncated[t, 0] = episode % 2 == 0, episode % 2 == 1
                final[t, 0] = following
                frame_id += 1
                following = np.full((k,) + FRAME, frame_id % 256, np.uint8)
                step_in_episode, episode = 0, episode + 1
            stack = following
        zeros = np.zeros((batch_T, 1), np.int64)
        yield Samples(
            agent=AgentSamples(action=zeros, prev_action=zeros, agent_info=None),
            env=EnvSamples(
                observation=obs,
                reward=np.zeros((batch_T, 1), np.float32),
                prev_reward=np.zeros((batch_T, 1), np.float32),
                terminated=terminated,
                truncated=truncated,
                final_observation=final,
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="transitions the replay holds (B=1)")
    parser.add_argument("--frame-stack", type=int, default=4)
    parser.add_argument("--episode-len", type=int, default=2_000)
    parser.add_argument("--batch-T", type=int, default=1_000)
    args = parser.parse_args()

    replay = NStepReplayBuffer(args.size, 1, n_step=3, frame_stack=args.frame_stack)
    for batch in batches(args.size, args.batch_T, args.frame_stack, args.episode_len):
        replay.append(batch)
    frame_unit = np.prod(FRAME)
    store = replay.observations.nbytes
    finals = sum(obs.nbytes for obs in replay.final_observation.values())
    n = len(replay)
    print(f"transitions: {n}, observations stored whole would take {args.frame_stack} frames each")
    print(f"frame store: {store / n / frame_unit:.4f} frames per transition ({store / 2**20:.1f} MiB)")
    print(f"final observations of {len(replay.final_observation)} truncations: {finals / n / frame_unit:.4f}")
    print(f"observation bytes per transition: {(store + finals) / n / frame_unit:.4f} x 84*84")


if __name__ == "__main__":
    main()
