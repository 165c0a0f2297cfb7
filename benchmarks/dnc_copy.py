"""The DNC copy task: does `rlfleet.models.dnc.DncCore` learn to repeat a sequence of bit vectors?

    python benchmarks/dnc_copy.py --updates 10000 --seed 0 --out dnc-copy-seed0.json

Each item is a sequence of ``L`` random ``--bits``-bit vectors (``L`` uniform in
``1..--max-length``, one length per training batch), then a step with only the delimiter channel
set, then ``L`` blank steps during which the target is the sequence. The core (from a zero state)
feeds a linear layer giving one logit per bit; the loss is the sigmoid cross-entropy over the
output steps only, minimised with Adam. Every ``--eval-every`` updates the bit error rate (rounded
outputs against targets, over the output steps) is measured on a fresh batch holding every length
``1..--max-length`` equally often. Prints one line per evaluation, then a final line with the
first update whose bit error was below ``--threshold``, the final bit error and the time, and
writes the same figures as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rlfleet.models.dnc import DncCore


def copy_batch(lengths: torch.Tensor, bits: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``lengths [B]`` -> ``(x [T,B,bits+1], target [T,B,bits], output_mask [T,B])`` with
    ``T = 2 max(lengths) + 1``: item ``b`` shows its sequence at steps ``0..L-1``, the delimiter
    at step ``L`` and must repeat the sequence at steps ``L+1..2L``."""
    B, longest = len(lengths), int(lengths.max())
    T = 2 * longest + 1
    sequence = torch.randint(0, 2, (longest, B, bits), generator=generator).float()
    steps = torch.arange(longest).unsqueeze(1)
    shown = steps < lengths  # [longest, B]
    sequence = sequence * shown.unsqueeze(-1)
    x = torch.zeros(T, B, bits + 1)
    x[:longest, :, :bits] = sequence
    x[lengths, torch.arange(B), bits] = 1.0
    # the output step L+1+i of item b repeats its step i
    rows = (lengths + 1 + steps).clamp(max=T - 1)  # [longest, B]
    columns = torch.arange(B).expand(longest, B)
    target = torch.zeros(T, B, bits)
    mask = torch.zeros(T, B, dtype=torch.bool)
    target[rows[shown], columns[shown]] = sequence[shown]
    mask[rows[shown], columns[shown]] = True
    return x, target, mask


class CopyModel(nn.Module):
    """`DncCore` then one logit per bit: ``x [T,B,bits+1]`` -> ``logits [T,B,bits]``."""

    def __init__(self, bits: int, hidden_size: int, **options):
        super().__init__()
        self.core = DncCore(bits + 1, hidden_size, **options)
        self.head = nn.Linear(hidden_size, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x.new_zeros(x.shape[1], self.core.state_size)
        out, _ = self.core(x, state, final_state=False)
        return self.head(out)


def bit_error(model: CopyModel, max_length: int, bits: int, per_length: int, generator: torch.Generator) -> float:
    """Bit error rate over a fresh batch of ``per_length`` items of each length ``1..max_length``."""
    lengths = torch.arange(1, max_length + 1).repeat_interleave(per_length)
    x, target, mask = copy_batch(lengths, bits, generator)
    with torch.no_grad():
        wrong = (model(x) > 0).float() != target
    return float(wrong[mask].float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=8)
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=10.0, help="global gradient-norm clip")
    parser.add_argument("--hidden", type=int, default=64, help="the controller's width")
    parser.add_argument("--memory-slots", type=int, default=16)
    parser.add_argument("--word-size", type=int, default=16)
    parser.add_argument("--read-heads", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-per-length", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = torch.Generator().manual_seed(args.seed)
    evaluation = torch.Generator().manual_seed(10_000 + args.seed)
    model = CopyModel(
        args.bits,
        args.hidden,
        memory_slots=args.memory_slots,
        word_size=args.word_size,
        read_heads=args.read_heads,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    first_below, curve = None, []
    start = time.perf_counter()
    for update in range(1, args.updates + 1):
        length = int(torch.randint(1, args.max_length + 1, (), generator=data))
        x, target, mask = copy_batch(torch.full((args.batch,), length), args.bits, data)
        loss = F.binary_cross_entropy_with_logits(model(x)[mask], target[mask])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        if update % args.eval_every == 0 or update == args.updates:
            error = bit_error(model, args.max_length, args.bits, args.eval_per_length, evaluation)
            curve.append((update, error))
            if first_below is None and error < args.threshold:
                first_below = update
            elapsed = time.perf_counter() - start
            print(f"update {update}: loss {loss.item():.4f}, bit error {error:.4f}, {elapsed:.0f} s", flush=True)
    result = {
        "seed": args.seed,
        "updates": args.updates,
        "max_length": args.max_length,
        "threshold": args.threshold,
        "first_update_below_threshold": first_below,
        "final_bit_error": curve[-1][1],
        "seconds": round(time.perf_counter() - start, 1),
        "curve": curve,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"DNC copy, lengths 1..{args.max_length}, seed {args.seed}: bit error < {args.threshold} first at update "
        f"{first_below}, final bit error {result['final_bit_error']:.4f} after {args.updates} updates, "
        f"{result['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
