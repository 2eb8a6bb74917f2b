"""The ANS stack of the bits-back codec, on `constriction.stream.stack.AnsCoder`.

`Stack` pushes (encodes) and pops (decodes) whole arrays of symbols in one call each,
with a categorical table per symbol (`constriction.stream.model.Categorical`,
perfect=False: every table entry gets at least the smallest representable probability
2^-24, rows are normalized by the coder) or a uniform model. ANS is last in, first out: a
pop with the same table undoes a push exactly, and a push undoes a pop, which is what
bits-back coding relies on.

A pop from a stack that runs dry does not fail in constriction: it silently returns
low symbols (0 on an empty stack) and the rate is lost. `Stack.pop` checks after every
call that the coder still held more than one 32-bit word of state (the ANS state never
drops below 2^32 while words are left to refill it, and never recovers once it has), and
raises `StackUnderflow` otherwise; the codec then starts over with more initial bits.

`seed_words(n)` are the initial bits: n fixed pseudo-random 32-bit words (SHAKE-256 of a
constant, identical on every platform and numpy version), the last one nonzero as
constriction requires. A pop can remove at most 24 bits per symbol (the coder's
probability precision), which bounds how many seed words the first pops can need.

Example:

    stack = Stack(seed_words(64))
    k = stack.pop(table)               # table [n, m] -> int32 [n]
    stack.push(k, table)               # the stack is back where it was
    words = stack.words()              # uint32 array: the compressed data
"""

import hashlib

import constriction
import numpy as np

# Bits of probability precision of constriction's default ANS coder: every symbol costs
# at most this many bits, so a pop removes at most PRECISION bits per symbol.
PRECISION = 24
WORD_BITS = 32
_SEED_DOMAIN = b"keras_bdgm.compression bits-back initial words v1"


class StackUnderflow(RuntimeError):
    """A pop needed more bits than the stack held."""


def seed_words(count):
    """`count` fixed pseudo-random uint32 words (little-endian SHAKE-256 stream)."""
    count = int(count)
    if count < 2:
        raise ValueError(f"seed word count must be >= 2, got {count}.")
    words = np.frombuffer(hashlib.shake_256(_SEED_DOMAIN).digest(4 * count), dtype="<u4").astype(np.uint32)
    words[-1] |= np.uint32(1)  # constriction's ANS data never ends in a zero word
    return words


class Stack:
    """An ANS stack with array pushes and pops.

    Args:
      words: initial compressed data (uint32 array), or None for an empty stack.
      trace: if a list, every push and pop appends (op, symbols, model) to it, model
        being the probability table or the uniform alphabet size (for accounting tests).
      guard: check after every pop that the stack did not run dry (`StackUnderflow`): for
        bits-back coding, whose pops must be paid for by bits already on the stack. A
        stack that only pops what was pushed onto it (direct coding) ends empty, and
        passes guard=False.
    """

    def __init__(self, words=None, trace=None, guard=True):
        if words is None:
            self._coder = constriction.stream.stack.AnsCoder()
        else:
            self._coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        self._categorical = constriction.stream.model.Categorical(perfect=False)
        self._uniform = {}
        self.trace = trace
        self.guard = guard

    def _uniform_model(self, size):
        if size not in self._uniform:
            self._uniform[size] = constriction.stream.model.Uniform(int(size))
        return self._uniform[size]

    def _record(self, op, symbols, model):
        if self.trace is not None:
            self.trace.append((op, np.array(symbols), model if np.isscalar(model) else np.array(model)))

    def _check(self):
        if self.guard and self._coder.num_valid_bits() <= WORD_BITS:
            raise StackUnderflow("The ANS stack ran out of bits during a pop.")

    def push(self, symbols, table):
        """Pushes int symbols [n] with one probability row each (table [n, m], float64)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int32)
        if symbols.size:
            self._coder.encode_reverse(symbols, self._categorical, np.ascontiguousarray(table))
            self._record("push", symbols, table)

    def pop(self, table):
        """Pops one symbol per row of `table` [n, m]; returns int32 [n]."""
        table = np.ascontiguousarray(table)
        if not len(table):
            return np.zeros(0, np.int32)
        symbols = self._coder.decode(self._categorical, table)
        self._check()
        self._record("pop", symbols, table)
        return symbols

    def push_uniform(self, symbols, size):
        """Pushes int symbols [n], each uniform over 0..size-1."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int32)
        if symbols.size:
            self._coder.encode_reverse(symbols, self._uniform_model(size))
            self._record("push", symbols, size)

    def pop_uniform(self, size, count):
        """Pops `count` symbols, each uniform over 0..size-1; returns int32 [count]."""
        if not count:
            return np.zeros(0, np.int32)
        symbols = np.asarray(self._coder.decode(self._uniform_model(size), int(count)), np.int32)
        self._check()
        self._record("pop", symbols, size)
        return symbols

    def num_bits(self):
        """Information on the stack in bits (not rounded up to whole words)."""
        return self._coder.num_valid_bits()

    def words(self):
        """The compressed data: a uint32 array (bottom of the stack first)."""
        return np.asarray(self._coder.get_compressed(), np.uint32)


def table_bits(table, symbols):
    """Summed -log2 of the normalized table probabilities of `symbols` (one row each),
    floored at 2^-PRECISION, the coder's smallest probability."""
    p = table[np.arange(len(symbols)), symbols] / table.sum(axis=1)
    return float(-np.log2(np.maximum(p, 2.0**-PRECISION)).sum())


def information_bits(trace):
    """(pushed, popped): summed -log2 probabilities of the symbols in a `Stack.trace`."""
    totals = {"push": 0.0, "pop": 0.0}
    for op, symbols, model in trace:
        if np.isscalar(model):
            totals[op] += float(symbols.size * np.log2(model))
        else:
            totals[op] += table_bits(model, symbols)
    return totals["push"], totals["pop"]
