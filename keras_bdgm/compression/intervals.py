"""Coding an index into K logistic intervals digit by digit, on the ANS stack.

Both kinds of symbols the codec codes are indices k in 0..K-1 of intervals of a fixed
grid g_0 = -inf < g_1 <= ... <= g_{K-1} < g_K = +inf, under a logistic whose standardized
edges are u_i = a + b * g_i (b > 0, one (a, b) per symbol):

    P(k) = F(u_{k+1}) - F(u_k)       (F the logistic CDF; `keras_bdgm.compression.logistic`)

(latents: g_i = logit(i / K), pixels: the 255 bin edges). A table of all K masses costs
K + 1 CDF evaluations per symbol. Writing k in mixed radix, k = sum_d k_d * stride_d with
digits k_d in 0..R_d-1 (R_1 * ... * R_D = K, most significant first), factors P exactly:

    P(k) = prod_d P(k_d | k_1..k_{d-1}),
    P(k_d = j | prefix) = mass of the sub-interval j of the prefix's interval (renormalized),

where the sub-intervals of a prefix's interval are read off the same grid at stride
stride_d. Each digit needs R_d + 1 CDF evaluations, sum_d (R_d + 1) in all: 35 instead of
1025 for K = 2^10 in digits (16, 8, 8); 34 instead of 257 for 256 pixel values in
(16, 16). The coder normalizes each row, so the tables hold the unnormalized P.

`pop` pops the digits most significant first (each table depends on the digits before
it); `push` pushes them least significant first, so a push undoes a pop exactly and the
decoder, popping, meets the most significant digit first.

A mixture of logistics (the PixelCNN's pixels) works the same way: with (a, b) of shape
[n, M] and mixture weights w [n, M] (rows summing to 1), every mass is the weighted sum of
the components' masses, P(k) = sum_m w_m (F(u_{m,k+1}) - F(u_{m,k})), and so is every digit's
table (`weights=` of `digit_table`, `pop` and `push`).

Example:

    coder = IntervalCoder(grid, radices=(16, 8, 8))       # grid: [K + 1] float64
    k = coder.pop(stack, a, b)                            # int64 [n]
    coder.push(stack, a, b, k)                            # the stack is as before
"""

import concurrent.futures
import functools
import os

import numpy as np

from keras_bdgm.compression.logistic import interval_masses, safe_rows

# Tables of at least this many rows are built in row chunks on a thread pool (numpy frees
# the GIL inside its loops). Every step is elementwise per row, so a chunk's rows come out
# bit-identical to the whole array's: the split (and the thread count) never changes a file.
PARALLEL_ROWS = 1 << 16


@functools.lru_cache(maxsize=None)
def _pool(threads):
    """One thread pool per size, made on first use."""
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="keras_bdgm_tables")


def _in_row_chunks(fn, arrays):
    """fn(*arrays) for arrays sharing their first axis (None entries passed through), the
    rows split into one chunk per usable CPU (at most 8) when there are at least
    PARALLEL_ROWS of them."""
    n = len(arrays[0])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = min(cpus, 8)
    if threads < 2 or n < PARALLEL_ROWS:
        return fn(*arrays)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    chunks = _pool(threads).map(lambda lo_hi: fn(*(None if x is None else x[lo_hi[0]:lo_hi[1]] for x in arrays)),
                                zip(bounds[:-1], bounds[1:]))
    return np.concatenate(list(chunks))


def split_radices(size, max_digit_bits=4):
    """Radices for a power-of-two `size`: as few digits of at most 2^max_digit_bits as
    possible, their bits as even as possible, larger digits first. 1024 -> (16, 8, 8)."""
    size = int(size)
    if size < 2 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 2, got {size}.")
    bits = size.bit_length() - 1
    digits = -(-bits // max_digit_bits)
    per = [bits // digits + (1 if d < bits % digits else 0) for d in range(digits)]
    return tuple(2**p for p in per)


class IntervalCoder:
    """Codes interval indices of a fixed grid under per-symbol logistics, digit by digit.

    Args:
      grid: [K + 1] non-decreasing float64 edges, grid[0] = -inf and grid[K] = +inf.
      radices: digit sizes, most significant first, with product K (each >= 2).
    """

    def __init__(self, grid, radices):
        grid = np.asarray(grid, np.float64)
        radices = tuple(int(r) for r in radices)
        size = int(np.prod(radices))
        if grid.shape != (size + 1,) or min(radices) < 2:
            raise ValueError(f"radices {radices} must be >= 2 with product len(grid) - 1 = {len(grid) - 1}.")
        if not (grid[0] == -np.inf and grid[-1] == np.inf and np.all(np.diff(grid) >= 0)):
            raise ValueError("grid must be non-decreasing from -inf to +inf.")
        self.grid = grid
        self.radices = radices
        self.size = size
        self.strides = tuple(int(np.prod(radices[d + 1:])) for d in range(len(radices)))

    def _edges(self, d, prefix):
        """Grid indices [n, R_d + 1] of digit d's sub-interval edges, given the prefix
        (k_1..k_{d-1} as one number, [n])."""
        offsets = np.arange(self.radices[d] + 1) * self.strides[d]
        return (prefix * (self.radices[d] * self.strides[d]))[:, None] + offsets

    @staticmethod
    def _mixed(a, b, edges, weights):
        """Masses of the intervals between consecutive `edges` [n, E] (grid values): one
        logistic per row (a, b [n]), or a mixture (a, b, weights [n, M])."""
        if weights is None:
            return interval_masses(a[:, None] + b[:, None] * edges)
        total = None
        for m in range(a.shape[1]):  # elementwise only: the same bits for any n (no BLAS, no pairwise sums)
            u = b[:, m, None] * edges
            u += a[:, m, None]
            masses = interval_masses(u)
            masses *= weights[:, m, None]
            if total is None:
                total = masses
            else:
                total += masses
        return total

    def digit_table(self, d, a, b, prefix, weights=None):
        """Unnormalized P(k_d = j | prefix) for j < R_d: [n, R_d] float64."""
        return _in_row_chunks(lambda a, b, prefix, weights: safe_rows(
            self._mixed(a, b, self.grid[self._edges(d, prefix)], weights)), (a, b, prefix, weights))

    def masses(self, a, b, weights=None):
        """All K interval masses [n, K] (for tests; coding uses `digit_table`)."""
        return safe_rows(self._mixed(a, b, np.broadcast_to(self.grid, (len(a), self.size + 1)), weights))

    def digits(self, k):
        """k [n] -> list of digit arrays, most significant first."""
        k = np.asarray(k, np.int64)
        return [(k // s) % r for r, s in zip(self.radices, self.strides)]

    def pop(self, stack, a, b, tables=None, weights=None):
        """Pops one index per (a, b) pair: int64 [n]. Appends each digit's (table, digit) to
        `tables` if given (for information accounting)."""
        prefix = np.zeros(len(a), np.int64)
        for d, radix in enumerate(self.radices):
            table = self.digit_table(d, a, b, prefix, weights)
            digit = stack.pop(table)
            if tables is not None:
                tables.append((table, digit))
            prefix = prefix * radix + digit
        return prefix

    def push(self, stack, a, b, k, tables=None, weights=None):
        """Pushes indices k [n] (the inverse of `pop`)."""
        digits = self.digits(k)
        prefix = np.zeros(len(a), np.int64)
        prefixes = []
        for radix, digit in zip(self.radices, digits):
            prefixes.append(prefix)
            prefix = prefix * radix + digit
        for d in reversed(range(len(self.radices))):
            table = self.digit_table(d, a, b, prefixes[d], weights)
            stack.push(digits[d], table)
            if tables is not None:
                tables.append((table, digits[d]))

