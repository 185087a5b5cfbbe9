"""Mutation check for the S3K tests: does each test family catch a deliberately broken layer?

Usage::

    .venv/bin/python tests/nn/s3k_mutants.py [--only NAME ...]

For every mutant, the package and tests/nn are copied to a scratch directory, one source line
is rewritten there (the checkout is never touched), and pytest runs tests/nn against the copy
(``PYTHONPATH`` puts the copy ahead of the editable install). A mutant is *caught* when at least
one test fails. Prints a markdown table (family, mutant, failing tests) and exits 1 if any mutant
survived. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    name: str
    family: str
    description: str
    path: str  # relative to the repository root
    old: str
    new: str


MUTANTS = [
    Mutant(
        "power-from-window-start",
        "recurrence (Eq. 7)",
        "lam_bar**k instead of lam_bar**(L-1-k)",
        "neurep/nn/functional.py",
        "exponents = torch.arange(length - 1, -1, -1, dtype=lam.dtype, device=lam.device)",
        "exponents = torch.arange(0, length, dtype=lam.dtype, device=lam.device)",
    ),
    Mutant(
        "euler-b-bar",
        "ZOH exactness",
        "zoh_discretise returns B_bar scale dt (Euler) instead of (exp(lam dt)-1)/lam",
        "neurep/nn/functional.py",
        "    lam_dt = lam * dt  # (N,)\n    return torch.exp(lam_dt), torch.expm1(lam_dt) / lam",
        "    lam_dt = lam * dt  # (N,)\n    return torch.exp(lam_dt), dt",
    ),
    Mutant(
        "euler-b-bar-kernel-only",
        "ZOH exactness",
        "B_bar = dt*B in s3k_coefficients only (the kernel the layer uses)",
        "neurep/nn/functional.py",
        "* (torch.expm1(lam_dt) / lam)[:, None]",
        "* dt[:, None]",
    ),
    Mutant(
        "paper-eq54-typo",
        "ZOH exactness",
        "B_bar = (dt*lam_bar - 1)/lam*B, the paper's Eq. 54 as printed",
        "neurep/nn/functional.py",
        "* (torch.expm1(lam_dt) / lam)[:, None]",
        "* ((dt * torch.exp(lam_dt) - 1) / lam)[:, None]",
    ),
    Mutant(
        "one-lambda-for-all-states",
        "invertibility (Thm 5.1)",
        "every state decays with the first state's lam (kernel rows proportional)",
        "neurep/nn/functional.py",
        "return torch.exp(lam_dt[:, None] * exponents)",
        "return torch.exp(lam_dt[:1, None] * exponents)",
    ),
    Mutant(
        "materialise-reversed-axes",
        "outer product",
        "materialise_kernel builds the outer product in reversed axis order",
        "neurep/nn/functional.py",
        "    full = kernels[0]\n    for kernel in kernels[1:]:",
        "    kernels = kernels[::-1]\n    full = kernels[0]\n    for kernel in kernels[1:]:",
    ),
    Mutant(
        "fast-path-flipped-leading-axes",
        "fast = reference",
        "contract_leading_axes contracts axes 1..d-1 against reversed kernels",
        "neurep/nn/functional.py",
        "partial = (partial * kernel.transpose(1, 2)[:, None]).sum(dim=2)",
        "partial = (partial * kernel.flip(-1).transpose(1, 2)[:, None]).sum(dim=2)",
    ),
    Mutant(
        "fused-bias-of-axis-0-everywhere",
        "unit windows = 1-D",
        "the fused adaptive-B path adds axis 0's bias on the leading axes",
        "neurep/nn/s3k.py",
        "coefficients[axis] * (b + bias[axis][:, None])",
        "coefficients[axis] * (b + bias[0][:, None])",
    ),
    Mutant(
        "fused-mean-column-scaled-wrong",
        "fast = reference",
        "the fused path's window average divides by the other axes' size, not the window's",
        "neurep/nn/window_maps.py",
        "weight.new_full((weight.shape[0], 1), 1.0 / size)",
        "weight.new_full((weight.shape[0], 1), 1.0 / weight.shape[0])",
    ),
    Mutant(
        "fused-backward-drops-b-path",
        "gradcheck",
        "the fused backward forgets the input gradient that flows through the last axis's B",
        "neurep/nn/window_maps.py",
        "grad_x.baddbmm_(last_weight.expand(num_windows, -1, -1), grad_b_last)",
        "grad_x.add_(0.0)",
    ),
    Mutant(
        "fused-backward-coefficient-grad",
        "gradcheck",
        "the fused backward's SSM-coefficient gradient ignores B",
        "neurep/nn/window_maps.py",
        "grad_coeff = (grad_kernel * b_last).sum(dim=0)",
        "grad_coeff = grad_kernel.sum(dim=0)",
    ),
    Mutant(
        "fused-backward-middle-axis-weights",
        "gradcheck",
        "the fused backward's middle-axis (d >= 3) B-weight gradient contracts the wrong axes",
        "neurep/nn/window_maps.py",
        'torch.einsum("pakz,pnk->azn", grouped, grad_b)',
        'torch.einsum("pakz,pnk->azn", grouped.flip(1), grad_b)',
    ),
    Mutant(
        "chunk-input-rows-too-short",
        "fast = reference (chunked)",
        "chunk input stops at stop*stride instead of (stop-1)*stride + window",
        "neurep/nn/s3k.py",
        "((start * step, (stop - 1) * step + length), (start, stop))",
        "((start * step, max(stop * step, start * step + length)), (start, stop))",
    ),
    Mutant(
        "chunk-param-grads-overwritten",
        "gradcheck",
        "chunked backward keeps only the last chunk's parameter gradient",
        "neurep/nn/s3k.py",
        "grad_params = list(torch._foreach_add(grad_params, list(grads)))",
        "grad_params = list(grads)",
    ),
    Mutant(
        "coefficients-detached",
        "gradcheck",
        "SSM coefficients detached (no gradient to lam, dt)",
        "neurep/nn/s3k.py",
        "coefficients = s3k_coefficients(lam[axis], dt[axis], length).to(windows.dtype)",
        "coefficients = s3k_coefficients(lam[axis], dt[axis], length).to(windows.dtype).detach()",
    ),
    Mutant(
        "bias-of-axis-0-everywhere",
        "unit windows = 1-D",
        "adaptive B adds axis 0's bias on every axis",
        "neurep/nn/s3k.py",
        "bias = self.b_bias[axis].to(windows.dtype)[None, :, None]",
        "bias = self.b_bias[0].to(windows.dtype)[None, :, None]",
    ),
    Mutant(
        "b-weight-rows-fortran-order",
        "axis permutation",
        "adaptive-B weight rows read as the other axes in the wrong (Fortran) order",
        "neurep/nn/s3k.py",
        "weight = weight.reshape(before, -1, self.state_size)  # (A, Z, N)",
        "weight = weight.reshape(-1, before, self.state_size).transpose(0, 1)  # (A, Z, N)",
    ),
    Mutant(
        "rmsnorm-on-states",
        "linearity (fixed B, no gate)",
        "RMS-normalise the states before the output projection",
        "neurep/nn/s3k.py",
        "return self.out_proj(states)  # (B, C_out, *O)",
        "return self.out_proj(states * torch.rsqrt(states.square().mean(1, keepdim=True) + 1e-6))",
    ),
    Mutant(
        "state-norm-dropped",
        "state norm",
        "state_norm=True builds the norm but the forward pass skips it",
        "neurep/nn/s3k.py",
        "states = self.state_norm(states)",
        "states = states",
    ),
    Mutant(
        "state-norm-eps-too-large",
        "state norm",
        "an eps of 1 on the mean square damps every window whose states are small",
        "neurep/nn/s3k.py",
        "ChannelRMSNorm(n, eps=1e-12)",
        "ChannelRMSNorm(n, eps=1.0)",
    ),
    Mutant(
        "no-dt-clamp",
        "stability",
        "dt = exp(log_dt) without the DT_RANGE clamp",
        "neurep/nn/s3k.py",
        "dt = torch.exp(self.log_dt.clamp(*_LOG_DT_RANGE))",
        "dt = torch.exp(self.log_dt)",
    ),
    Mutant(
        "padding-counted-once",
        "output shape",
        "conv_output_shape uses S + p instead of S + 2p",
        "neurep/nn/s3k.py",
        "(s + 2 * p - k) // st + 1",
        "(s + p - k) // st + 1",
    ),
    Mutant(
        "window-check-off-by-one",
        "ValueErrors",
        "the window-larger-than-input check lets a window one too long through",
        "neurep/nn/s3k.py",
        "if x.shape[2 + axis] < length:",
        "if x.shape[2 + axis] < length - 1:",
    ),
]


def _scratch_copy(dest: Path) -> None:
    shutil.copytree(ROOT / "neurep", dest / "neurep", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "tests" / "nn", dest / "tests" / "nn", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run_mutant(mutant: Mutant | None, seed: int) -> tuple[int, list[str], str]:
    """Returns (pytest exit code, failing test ids, the copy's neurep path)."""
    with tempfile.TemporaryDirectory(prefix="s3k-mutant-") as tmp:
        dest = Path(tmp)
        _scratch_copy(dest)
        if mutant is not None:
            target = dest / mutant.path
            source = target.read_text()
            count = source.count(mutant.old)
            if count != 1:
                raise SystemExit(f"{mutant.name}: pattern found {count} times in {mutant.path}")
            target.write_text(source.replace(mutant.old, mutant.new))
        env = dict(os.environ, PYTHONPATH=str(dest), PYTHONDONTWRITEBYTECODE="1")
        where = subprocess.run(
            [sys.executable, "-c", "import neurep; print(neurep.__file__)"],
            cwd=dest,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(str(dest)):
            raise SystemExit(f"the scratch copy is not the imported package: {where}")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-rf",
                "-p",
                "no:cacheprovider",
                f"--hypothesis-seed={seed}",
                "tests/nn",
            ],
            cwd=dest,
            env=env,
            capture_output=True,
            text=True,
        )
        failed = sorted(set(re.findall(r"^FAILED tests/nn/(\S+?)(?: - |$)", proc.stdout, re.M)))
        return proc.returncode, failed, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutant names to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument(
        "--check-patterns", action="store_true", help="only check each mutant applies once"
    )
    args = parser.parse_args(argv)
    if args.check_patterns:
        bad = [m.name for m in MUTANTS if (ROOT / m.path).read_text().count(m.old) != 1]
        print("patterns that no longer match exactly once:", bad or "none")
        return 1 if bad else 0
    code, failed, _ = run_mutant(None, args.seed)
    if code != 0:
        print(f"the unmutated suite fails: {failed}")
        return 2
    rows, survivors = [], []
    for mutant in MUTANTS:
        if args.only and mutant.name not in args.only:
            continue
        code, failed, _ = run_mutant(mutant, args.seed)
        caught = code != 0 and bool(failed)
        if not caught:
            survivors.append(mutant.name)
        shown = "<br>".join(f"`{f}`" for f in failed) if failed else f"**SURVIVED** (exit {code})"
        rows.append(f"| {mutant.family} | {mutant.description} (`{mutant.name}`) | {shown} |")
        print(rows[-1], flush=True)
    print("\n| family | broken variant | failing tests |\n|---|---|---|")
    print("\n".join(rows))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
