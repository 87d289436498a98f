"""Residency policies on tiny streams, each with its closed form derived in a comment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgesim.sim import POLICIES, Residency
from edgesim.sim.residency import (
    LRU,
    NEVER,
    NEVER_OP,
    Belady,
    Pinned,
    Stream,
    make_policy,
    pinned_priority,
)

A, B, C = 0, 1, 2


def _stream(sizes, capacity, paths, sequence=(0,)) -> Stream:
    return Stream(tuple(sizes), capacity, tuple(tuple(tuple(op) for op in p) for p in paths),
                  np.asarray(sequence, dtype=np.int32))


def _run(policy: Residency, stream: Stream) -> list[tuple[int, int, tuple[int, ...]]]:
    """(kept, streamed, evicted) of every op of the stream, in order."""
    out = []
    for i, p in enumerate(stream.sequence.tolist()):
        for j, ids in enumerate(stream.paths[p]):
            s = policy.serve(ids, i, j)
            out.append((s.kept, s.streamed, s.evicted))
    return out


def test_the_table_names_each_policy_class():
    assert list(POLICIES) == ["lru", "pinned", "belady"]
    for name, cls in POLICIES.items():
        assert issubclass(cls, Residency)
        assert cls.name == name


def test_unknown_policy_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown policy 'fifo'; expected one of lru, pinned"):
        make_policy("fifo", _stream([1], 1, [[(A,)]]))


def test_lru_two_blocks_that_do_not_fit_together_both_miss_every_time():
    # 10 + 10 > 15: each use of A evicts B and each use of B evicts A, so the stream
    # A B A B moves 4 x 10 = 40 bytes, all kept (each block alone fits), and every access
    # after the first evicts the other block.
    s = _stream([10, 10], 15, [[(A,), (B,), (A,), (B,)]])
    assert _run(make_policy("lru", s), s) == [(10, 0, ()), (10, 0, (A,)), (10, 0, (B,)),
                                              (10, 0, (A,))]


def test_lru_evicts_the_least_recently_used():
    # room for two of three 10-byte blocks: after A B A the least recent is B, so C evicts B
    # and the next A hits (0 bytes).
    s = _stream([10, 10, 10], 20, [[(A,), (B,), (A,), (C,), (A,)]])
    res = _run(make_policy("lru", s), s)
    assert res[3] == (10, 0, (B,))
    assert res[4] == (0, 0, ())


def test_lru_streams_a_block_larger_than_its_room_and_keeps_nothing():
    # a 20-byte block in 15 bytes cannot be kept: streamed every time, nothing evicted.
    s = _stream([5, 20], 15, [[(A,), (B,), (A,), (B,)]])
    lru = make_policy("lru", s)
    assert _run(lru, s) == [(5, 0, ()), (0, 20, ()), (0, 0, ()), (0, 20, ())]
    assert lru.resident_set() == {A}
    # an op's own blocks are never evicted to serve it: A (5) + B (12) > 15 in one op, so B is
    # streamed although it alone would fit
    s2 = _stream([5, 12], 15, [[(A, B)]])
    assert _run(make_policy("lru", s2), s2) == [(5, 12, ())]


def test_belady_keeps_the_block_used_again():
    # A B A with room for one 10-byte block: after B, A's next use (op 2) is nearer than B's
    # (never), so B bypasses SRAM (streamed) and A stays: 10 + 10 + 0 = 20 bytes, against
    # LRU's 30 (B evicts A, A misses again).
    s = _stream([10, 10], 10, [[(A,), (B,), (A,)]])
    assert _run(make_policy("belady", s), s) == [(10, 0, ()), (0, 10, ()), (0, 0, ())]
    lru = _run(make_policy("lru", s), s)
    assert sum(k + st for k, st, _ in lru) == 30


def test_belady_keeps_blocks_in_part():
    # A B A B, 10-byte blocks, 15 bytes of room. op 1: 20 B held > 15; B's next use (op 3)
    # is later than A's (op 2), so 5 of B's bytes go: kept 5, streamed 5. op 2: A is whole,
    # a hit. op 3: B's missing 5 bytes are fetched (held 20 again); neither block is used
    # again, the tie is broken by the higher block index, so B loses the 5 again: kept 0,
    # streamed 5. Total 10 + 10 + 0 + 5 = 25 bytes (LRU: 40).
    s = _stream([10, 10], 15, [[(A,), (B,), (A,), (B,)]])
    bel = make_policy("belady", s)
    assert _run(bel, s) == [(10, 0, ()), (5, 5, ()), (0, 0, ()), (0, 5, ())]
    assert bel.resident_bytes() == 15
    assert bel.resident_set() == {A}


def test_belady_looks_across_inferences():
    # two inferences of path (A, B), room for one: at B of inference 0 the next uses are A at
    # inference 1 op 0, B at inference 1 op 1, so B bypasses; inference 1 then hits A and
    # streams B again: 10 + 10 + 0 + 10 = 30 bytes.
    s = _stream([10, 10], 10, [[(A,), (B,)]], sequence=[0, 0])
    assert _run(make_policy("belady", s), s) == [(10, 0, ()), (0, 10, ()), (0, 0, ()),
                                                 (0, 10, ())]


def test_pinned_keeps_the_most_frequent_blocks_first():
    # path 0 = (A, B) taken by 3 of 4 inputs, path 1 = (A, C) by 1: use frequencies A 1.0,
    # B 0.75, C 0.25. Room for two 10-byte blocks: A and B are pinned; C is streamed on each
    # use: 4 inputs move A and B once (20 bytes) and C once per path-1 input (10 bytes).
    s = _stream([10, 10, 10], 20, [[(A,), (B,)], [(A,), (C,)]], sequence=[1, 0, 0, 0])
    assert pinned_priority(s) == [A, B, C]
    pin = make_policy("pinned", s)
    assert pin.pinned == {A, B}
    assert _run(pin, s) == [(10, 0, ()), (0, 10, ()), (0, 0, ()), (10, 0, ()),
                            (0, 0, ()), (0, 0, ()), (0, 0, ()), (0, 0, ())]


def test_pinned_ties_go_to_first_use_and_packing_is_greedy():
    # one path (C, B, A): equal frequencies, so priority is first use: C, B, A. A 30-byte C
    # does not fit in 20 and is skipped; B (10) and A (10) fill the room.
    s = _stream([10, 10, 30], 20, [[(C,), (B,), (A,)]])
    assert pinned_priority(s) == [C, B, A]
    assert make_policy("pinned", s).pinned == {A, B}


def test_pinned_on_an_empty_stream_weighs_paths_equally():
    # no inputs: each of the two paths counts 1/2, so the shared block A (1.0) comes first,
    # then B and C (0.5 each) by first use.
    s = _stream([10, 10, 10], 20, [[(A,), (B,)], [(A,), (C,)]], sequence=[])
    assert pinned_priority(s) == [A, B, C]


@pytest.mark.parametrize("cls", [LRU, Pinned, Belady])
def test_state_and_restore_replay_the_same_costs(cls):
    # a policy restored to a snapshot answers the same stream the same way again
    s = _stream([10, 10, 10], 20, [[(A,), (B,), (C,), (A,)]], sequence=[0, 0])
    pol = cls.for_stream(s)
    pol.serve((A,), 0, 0)
    snap = pol.state()
    first = [pol.serve(ids, 0, j + 1) for j, ids in enumerate(s.paths[0][1:])]
    pol.restore(snap)
    again = [pol.serve(ids, 0, j + 1) for j, ids in enumerate(s.paths[0][1:])]
    assert first == again


def test_belady_future_index_is_a_window_per_set_of_paths(monkeypatch):
    # a tree: backbone blocks 0-49 on both paths, leaf blocks 50-99 on path 0 and 100-149 on
    # path 1: three sets of paths ({0,1}, {0}, {1}), so the next-use index is 3 rows whatever
    # the number of blocks, each a window of 64 inferences (WINDOW, made small here) however
    # long the stream; and a next use agrees with a scan of the stream across windows and
    # for a set read early, then not again until the last inference
    from edgesim.sim import residency
    from edgesim.sim.residency import Future
    monkeypatch.setattr(residency, "WINDOW", 64)
    paths = ((tuple(range(50)), tuple(range(50, 100))), (tuple(range(50)), tuple(range(100, 150))))
    for n in (100, 1000, 10_000):
        seq = np.arange(n, dtype=np.int32) % 2
        seq[3:] = 0   # path 1 (blocks 100-149) at inference 1, then at the last only
        seq[-1] = 1
        f = Future(_stream([10] * 150, 100, paths, seq))
        # block 60 (path 0's leaf) after inference 0 (path 0) is next read by inference 2
        assert f.next_use(60, 0, 1) == 2 * (1 << 20) + 1
        assert f.next_use(10, 0, 1) == 1 * (1 << 20) + 0
        assert f.window(0).shape == (3, 64)
        for i in (0, 1, 2, 63, 64, 65, n - 2, n - 1):
            for b in (10, 60, 120):
                later = [k for k in range(i + 1, n) if b < 50 or seq[k] == (b >= 100)]
                want = (later[0] * (1 << 20) + (0 if b < 50 else 1)) if later else NEVER
                assert f.next_use(b, i, NEVER_OP) == want, (n, i, b)


def test_pinned_runs_wherever_lru_runs():
    """A pinned set leaves the largest one-channel weight tile free. At 64 KiB of SRAM
    (48 KiB for weights on npu_small) the pinned set took the whole weight SRAM and
    layer2.0.downsample.0's one-channel tile (264 B) fitted nowhere: a TileError where lru
    ran (below ~117 KiB on dense_r50)."""
    from edgesim import api
    for size in ("64KiB", "100KiB"):
        lru = api.run("npu_small", "dense_r50", inputs=2, policy="lru",
                      overrides=[f"sram.size={size}"])
        pinned = api.run("npu_small", "dense_r50", inputs=2, policy="pinned",
                         overrides=[f"sram.size={size}"])
        assert len(pinned.result.rows) == len(lru.result.rows) == 2
        # belady is a lower bound on both (its law), here too
        belady = api.run("npu_small", "dense_r50", inputs=2, policy="belady",
                         overrides=[f"sram.size={size}"])
        assert belady.result.rows[-1].weight_dram_bytes <= min(
            pinned.result.rows[-1].weight_dram_bytes, lru.result.rows[-1].weight_dram_bytes)


def _served(policy: Residency, stream: Stream) -> list[int]:
    """The engine's memo over ``stream`` (``sim.engine._Runner.infer``): an inference is
    taken from it when its path and state were met with a ``condition`` on the future that
    ``holds`` here; per path, the inferences served op by op."""
    memo: dict = {}
    served = [0] * len(stream.paths)
    for i, p in enumerate(stream.sequence.tolist()):
        entries = memo.setdefault((p, policy.memo_key(i, ())), [])
        after = next((a for c, a in entries if c is None or policy.holds(c, i)), None)
        if after is not None:
            policy.restore(after)
            continue
        policy.watch()
        for j, ids in enumerate(stream.paths[p]):
            policy.serve(ids, i, j)
        entries.append((policy.condition(), policy.state()))
        served[p] += 1
    return served


def test_belady_memo_condition_leaves_out_what_cannot_change_a_decision():
    # three paths share backbone block 0 (op 0 of each) and each has its own leaf (op 1), all
    # 10 bytes in 10 bytes of SRAM. Op 1 drops the farther of the backbone and the leaf: the
    # leaf, whatever the future, for the backbone is read at op 0 of the next inference and
    # the leaf at best at op 1 of it; so the condition is "nxt[leaf] >= nxt[backbone]" and
    # holds for every inference after the first that is not the last (nothing read again: a
    # tie of two nevers, ordered by block). Per path that is one inference served, plus the
    # first (from an empty SRAM) and the last: at most 3 in 300 random inputs, where a key
    # naming the order of every set's next inference had one per order of the three leaves
    paths = (((0,), (1,)), ((0,), (2,)), ((0,), (3,)))
    seq = np.random.default_rng(0).integers(0, 3, 300)
    s = _stream([10, 10, 10, 10], 10, paths, seq)
    served = _served(make_policy("belady", s), s)
    assert max(served) <= 3
    assert sum(served) <= 3 + 2
    # with room for the backbone and half a leaf, which leaf keeps its half is decided by
    # their next inferences: per path and state (the half held), one condition per outcome
    s = _stream([10, 10, 10, 10], 15, paths, seq)
    assert max(_served(make_policy("belady", s), s)) <= 1 + 1 + 2 * 2 + 1


def _min_by_definition(stream: Stream, restore_at: int):
    """Belady's MIN with bypass as the module docstring states it, written plainly: after each
    op keep the bytes with the nearest next use (found by scanning the stream), dropping the
    farthest first, ties the higher block index first. At inference ``restore_at`` it rewinds
    to the state before inference 1 and carries on (what a memo hit does)."""
    uses = [(i, j, b) for i, p in enumerate(stream.sequence.tolist())
            for j, ids in enumerate(stream.paths[p]) for b in ids]

    def next_use(b, i, j):
        return next(((i2, j2) for i2, j2, b2 in uses if b2 == b and (i2, j2) > (i, j)),
                    (1 << 60, 0))

    held: dict[int, int] = {}
    out, snap = [], None
    for i, p in enumerate(stream.sequence.tolist()):
        if i == 1:
            snap = dict(held)
        if i == restore_at:
            held = dict(snap)
        for j, ids in enumerate(stream.paths[p]):
            current = dict.fromkeys(ids)
            before = {b: held.get(b, 0) for b in current}
            for b in current:
                held[b] = stream.sizes[b]
            over = sum(held.values()) - stream.capacity
            evicted = []
            for b in sorted(held, key=lambda x: (next_use(x, i, j), x), reverse=True):
                if over <= 0:
                    break
                drop = min(held[b], over)
                held[b] -= drop
                over -= drop
                if b not in current:
                    evicted.append(b)
                if held[b] == 0:
                    del held[b]
            kept = sum(max(0, held.get(b, 0) - before[b]) for b in current)
            fetched = sum(stream.sizes[b] - before[b] for b in current)
            out.append((kept, fetched - kept, tuple(evicted)))
    return out


@pytest.mark.parametrize("capacity", [7, 25, 60])
def test_belady_evicts_as_its_definition_says_across_restores(capacity):
    # Belady keeps its eviction order in a heap with running totals and rebuilds its state
    # lazily after a restore; whatever the bookkeeping, every op's (kept, streamed, evicted)
    # must be those of the definition (ties and partial blocks included), also after the
    # state is rewound to an earlier snapshot as a memo hit does.
    rng = np.random.default_rng(capacity)
    sizes = rng.integers(1, 20, 8).tolist()
    paths = [[tuple(rng.choice(8, rng.integers(1, 4), replace=False).tolist())
              for _ in range(5)] for _ in range(3)]
    seq = rng.integers(0, 3, 30)
    s = _stream(sizes, capacity, paths, seq)
    bel = make_policy("belady", s)
    out, snap = [], None
    for i, p in enumerate(seq.tolist()):
        if i == 1:
            snap = bel.state()
        if i == 12:
            bel.restore(snap)
        for j, ids in enumerate(s.paths[p]):
            got = bel.serve(ids, i, j)
            out.append((got.kept, got.streamed, got.evicted))
    assert out == _min_by_definition(s, 12)


def test_belady_restored_to_the_state_it_left_serves_a_later_inference_afresh():
    # a memo hit restores the state an inference left, often the very snapshot the policy is
    # in; the inferences taken from the memo in between were never served, so the next uses
    # noted back then are positions in the past: a later inference must be served as by a
    # policy restored to an equal state from elsewhere (before, one held on to the old order)
    rng = np.random.default_rng(5)
    for _ in range(20):
        sizes = rng.integers(1, 20, 6).tolist()
        paths = [[tuple(rng.choice(6, 2, replace=False).tolist()) for _ in range(4)]
                 for _ in range(3)]
        seq = rng.integers(0, 3, 12)
        s = _stream(sizes, 30, paths, seq)
        for later in range(2, 12):
            live, fresh = make_policy("belady", s), make_policy("belady", s)
            for j, ids in enumerate(s.paths[seq[0]]):
                live.serve(ids, 0, j)
            snap = live.state()
            live.restore(snap)
            fresh.restore(tuple(list(snap)))
            p = seq[later]
            assert ([live.serve(ids, later, j) for j, ids in enumerate(s.paths[p])]
                    == [fresh.serve(ids, later, j) for j, ids in enumerate(s.paths[p])])


def test_lru_key_when_nothing_can_be_evicted_is_what_is_missing():
    # 10-byte blocks A..E in 60 bytes: a path reading B, A, D needs at most 30 bytes more, so
    # beside A, B, C, E held (40) nothing is evicted, whatever their order: the inference keeps
    # D and leaves its blocks last in the order of their last use. Two orders share one memo
    # key, and the change one inference noted (``after``) applied to the other order is what
    # serving it there gives
    # (a sixth block, F, read by no path, so that the model does not fit whole: then nothing
    # is ever evicted and the order is not kept at all)
    D, E = 3, 4
    s = _stream([10] * 5 + [20], 60, [[(B,), (A,), (D,)]])
    blocks = (B, A, D)
    first, other, served = (make_policy("lru", s) for _ in range(3))
    for pol, order in ((first, (E, C, A, B)), (other, (C, E, B, A)), (served, (C, E, B, A))):
        pol.restore(order)
    key = first.memo_key(0, blocks)
    assert key == other.memo_key(0, blocks) == ("free", (D,))
    assert _run(first, s) == [(0, 0, ()), (0, 0, ()), (10, 0, ())]
    advance = first.after()
    other.restore(advance)
    _run(served, s)
    assert other.state() == served.state() == (C, E, B, A, D)
    assert other.resident_bytes() == served.resident_bytes() == 50
    # a path that reads no weights changes no order (before, its key took the whole order)
    assert first.memo_key(1, ()) == ("free", ())
    other.restore(first.after())
    assert other.state() == (C, E, B, A, D)
    # the same key from another held set (A, B, E: 30 bytes): the change adds D to that set
    # (held sets are kept apart from orders, ``_set_of``), and what is free next is asked of
    # the set it leads to: C (10 bytes more, 50 in all) still fits
    third = make_policy("lru", s)
    third.restore((E, B, A))
    assert third.memo_key(0, blocks) == ("free", (D,))
    third.restore(advance)
    assert third.resident_set() == {A, B, D, E}
    assert third.resident_bytes() == 40
    assert third.state() == (E, B, A, D)
    assert third.memo_key(1, (C,)) == ("free", (C,))


@pytest.mark.parametrize("seed", [2, 9])
def test_lru_with_its_memo_serves_as_op_by_op_on_many_trees(seed, passes):
    # LRU's memo-on run against the op-by-op loop on random staged streams and rooms (from
    # less than a path to the whole tree): its one-loop ``serve_path``, its memo key (an
    # interned state, or what is missing when nothing can be evicted) and ``restore`` of an
    # ``after`` (a state, or an ``_Advance`` applied once per state and kept) must give, per
    # inference, the kept, streamed and wait and the order after of serving op by op; and
    # so from states restored at random as a memo hit of another situation leaves them, and
    # with the memo started over at times (a key worked out before, asked again, must still
    # say what ``after`` is to note). Held sets are interned apart from orders (``_set_of``:
    # the free key per path and where an advance leads, shared by every order holding one
    # set). With the compiled pass (``_kernel.lru_pass``, from and to the order as a tuple)
    # and with the Python loop.
    rng = np.random.default_rng(seed)
    hits = advanced = 0
    for case in range(60):
        paths = _staged(rng, int(rng.integers(2, 6)))
        sizes = rng.integers(1, 40, 1 + max(b for p in paths for op in p for b in op)).tolist()
        seq = rng.integers(0, len(paths), int(rng.integers(20, 80)))
        s = _stream(sizes, int(rng.integers(1, sum(sizes) + 10)), paths, seq)
        fast, slow = make_policy("lru", s), make_policy("lru", s)
        every = [tuple(b for op in path for b in op) for path in s.paths]   # (one object
        memo: dict = {}                                                   # per path)
        states = []
        for i, p in enumerate(seq.tolist()):
            if states and rng.random() < 0.15:
                state = states[int(rng.integers(len(states)))]
                fast.restore(state)
                slow.restore(state)
            if rng.random() < 0.05:   # (the engine's memo starts over when full)
                memo.clear()
            key = (p, fast.memo_key(i, every[p]))
            free = isinstance(key[1], tuple) and key[1][0] == "free"
            assert (type(fast.after()).__name__ == "_Advance") == free   # (what it notes)
            if key in memo:
                out, after = memo[key]
                fast.restore(after)
                hits += 1
                advanced += type(after).__name__ == "_Advance"
            else:   # (as the engine asks with the compiled kernel now and then: one vector)
                vec = fast.serve_vec(s.paths[p], i) if rng.random() < 0.5 else None
                out = fast.serve_path(s.paths[p], i) if vec is None else _vec_lists(vec)
                memo[key] = (out, fast.after())
            assert out == Residency.serve_path(slow, s.paths[p], i), (case, i)
            assert fast.state() == slow.state(), (case, i)
            assert fast.resident_bytes() == slow.resident_bytes()
            assert fast.resident_set() == slow.resident_set()
            states.append(slow.state())
    assert hits > 1000   # (both kinds of memo hit met, often)
    assert advanced > 150


def _vec_lists(vec: bytes) -> tuple[list[int], list[int], list[int]]:
    """A policy's ``serve_vec`` as ``serve_path``'s three lists."""
    values = np.frombuffer(vec, dtype=np.int64).tolist()
    n = len(values) // 3
    return values[:n], values[n:2 * n], values[2 * n:]


def _staged(rng, most_ops: int = 3) -> list[list[tuple[int, ...]]]:
    """Random paths through 2-3 stages of 1-2 variants each, every variant of a stage the same
    number of ops (1 to ``most_ops``): a routed tree when the paths' variant choices branch
    as one (a backbone, then nodes), other sharings too. Each op reads 1-3 blocks of its own
    and, at times, one the stage's variants all read at that op; block numbers shuffled. So
    a block is read at one op by every path reading it, and once per path."""
    stages = []
    nblocks = 0
    for _ in range(rng.integers(2, 4)):
        nops, nvar = int(rng.integers(1, most_ops + 1)), int(rng.integers(1, 3))
        shared = []
        for _ in range(nops):
            shared.append((nblocks,) if rng.random() < 0.3 else ())
            nblocks += len(shared[-1])
        variants = []
        for _ in range(nvar):
            ops = []
            for j in range(nops):
                k = int(rng.integers(1, 4))
                ops.append(tuple(range(nblocks, nblocks + k)) + shared[j])
                nblocks += k
            variants.append(ops)
        stages.append(variants)
    combos = list(itertools.product(*(range(len(v)) for v in stages)))
    picked = rng.permutation(len(combos))[:int(rng.integers(2, 5))]
    relabel = rng.permutation(nblocks).tolist()
    return [[tuple(relabel[b] for b in op) for k, v in zip(combos[c], stages, strict=True)
             for op in v[k]] for c in sorted(picked.tolist())]


def test_belady_a_set_at_a_time_serves_trees_as_op_by_op_and_its_memo_as_well(passes):
    # On paths that read each block once and at one op whichever of them reads it (a tree,
    # ``_staged``) ``Belady.serve_path`` takes its sets' stacks instead of a heap of blocks. Per
    # inference it must give the op-by-op loop's kept, streamed and wait and leave the same
    # state, on long random streams (sets read for the last time near the end, whose order
    # is then by block), for SRAM from a few bytes to most of the tree, also when the
    # inferences it serves alternate with op-by-op ones (as when another path of the model
    # reads a block twice: its heap is made again from what the set pass left). And the
    # engine's memo over it (state, path, condition) must hand out only what serving would
    # give: a condition that left out a decision fails here.
    rng = np.random.default_rng(11)
    cases = 0
    for _ in range(40):
        paths = _staged(rng)
        sizes = rng.integers(1, 40, 1 + max(b for p in paths for op in p for b in op)).tolist()
        seq = rng.integers(0, len(paths), int(rng.integers(20, 120)))
        capacity = int(rng.integers(1, sum(sizes)))
        s = _stream(sizes, capacity, paths, seq)
        fast, slow, memoised = (make_policy("belady", s) for _ in range(3))
        assert all(fast._program(s.paths[p]).sets is not None for p in range(len(paths)))
        want = []
        for i, p in enumerate(seq.tolist()):
            if rng.random() < 0.2:
                got = Residency.serve_path(fast, s.paths[p], i)
            else:
                got = fast.serve_path(s.paths[p], i)
            want.append(Residency.serve_path(slow, s.paths[p], i))
            assert got == want[-1], (i, capacity)
            # (the same held bytes; as a prefix per set or per block: another kind of state)
            assert list(fast.state()) == list(slow.state())
        memo: dict = {}
        for i, p in enumerate(seq.tolist()):
            entries = memo.setdefault((p, memoised.memo_key(i, ())), [])
            hit = next(((out, a) for c, out, a in entries
                        if c is None or memoised.holds(c, i)), None)
            if hit is not None:
                memoised.restore(hit[1])
                assert hit[0] == want[i], (i, capacity)
                cases += 1
                continue
            memoised.watch()
            out = memoised.serve_path(s.paths[p], i)
            assert out == want[i]
            entries.append((memoised.condition(), out, memoised.state()))
    assert cases > 500   # memo hits were checked, not only runs


def test_belady_on_byte_sums_per_set_drops_a_gapped_set_through_both_parts(passes):
    # Two paths share set X = {x0 (5 B), y0 (12 B)} at ops 0 and 2; A = {a0 (10), a1 (8)} is
    # path 0's, B = {b0, b1} path 1's. Inference 0 runs path 0 with 20 B of room, holding
    # a0 and 6 B of a1 (a prefix of A); the stream is 0, 1, 0, so A (next read at inference
    # 2) is farther than X and B (inference 1) and gives all the room:
    #   op 0: x0 fetched (5), 21 > 20: a0, read here, loses 1 B -> A's stack [0, 9) of 18.
    #   op 1: a1 needs its last 2 B: A's stack is [0, 9) + [10, 18) (a gap), 22 > 20: a1
    #         loses those 2 B again (kept 0, streamed 2) -> [0, 9) + [10, 16).
    #   op 2: y0 fetched (12), 32 > 20: A gives its upper part (a1's 6 B) and 6 B of a0
    #         -> [0, 3); the op waits for op 1, the last that read what left (a1).
    # Byte sums per set (``_serve_bytes``) give what the op-by-op loop gives, state too.
    a0, a1, x0, y0, b0, b1 = range(6)
    paths = [((a0, x0), (a1,), (y0,)), ((b0, x0), (b1,), (y0,))]
    s = _stream([10, 8, 5, 12, 3, 3], 20, paths, [0, 1, 0])
    fast, slow = make_policy("belady", s), make_policy("belady", s)
    for pol in (fast, slow):
        pol.restore([(a0, 10), (a1, 6)])
    assert fast._program(s.paths[0]).spans is not None
    assert fast._serve_bytes(fast._program(s.paths[0]), 3, 0) == (
        [5, 0, 12], [0, 2, 0], [-1, -1, 1])
    assert Residency.serve_path(slow, s.paths[0], 0) == ([5, 0, 12], [0, 2, 0], [-1, -1, 1])
    assert list(fast.state()) == list(slow.state()) == [(a0, 3), (x0, 5), (y0, 12)]


@pytest.mark.parametrize(("seed", "cases", "restores"), [(5, 200, True), (17, 5, False)])
def test_belady_on_byte_sums_per_set_serves_as_op_by_op_on_many_trees(seed, cases, restores,
                                                                    passes):
    # ``_serve_bytes`` against the op-by-op loop on many random staged streams (``_staged``)
    # and rooms, from states restored as the engine's memo does: per inference the same
    # kept, streamed and wait and the same held bytes after, and the condition on the
    # future ``_serve_sets`` notes for the same decisions. It must serve most inferences
    # itself (not give them up) and meet its sets' gaps (a set read past a part it dropped).
    # Seed 17 without restores: streams of long runs only (a set off the path giving its
    # bytes op after op until its last falls below another set's is in its fifth).
    # With the compiled passes, every third inference is served as the engine's memo serves
    # a new situation from a prefix state: ``step`` (``watch``, ``serve_vec``, ``condition``
    # and ``after`` in one call), which must answer and note the same and leave the same
    # state, and ``after`` as ``state()`` gives it.
    rng = np.random.default_rng(seed)
    served = gapped = total = stepped = 0
    for case in range(cases):
        # (long runs of one set's ops too)
        paths = _staged(rng, 3 if case % 2 and restores else int(rng.integers(2, 12)))
        sizes = rng.integers(1, 40, 1 + max(b for p in paths for op in p for b in op)).tolist()
        seq = rng.integers(0, len(paths), int(rng.integers(20, 80)))
        s = _stream(sizes, int(rng.integers(1, sum(sizes))), paths, seq)
        fast, sets, slow = (make_policy("belady", s) for _ in range(3))
        states = []
        total += len(seq)
        for i, p in enumerate(seq.tolist()):
            if restores and states and rng.random() < 0.2:   # (a state met before, as a
                state = states[int(rng.integers(len(states)))]   # memo hit leaves)
                for pol in (fast, sets, slow):
                    pol.restore(state)
            for pol in (fast, sets, slow):
                pol.watch()
            program = fast._program(s.paths[p])
            quick = fast.quick(s.paths[p])
            step = (None if i % 3 or quick is None or fast.quick_state() is None
                    else fast.step(quick, i))
            if step is not None:
                fast.condition()   # (what ``watch`` began; ``step`` notes on its own)
                stepped += 1
            # (every other inference as the engine asks first with the compiled kernel: the
            # pass's answers as one vector, ``serve_vec``, None where it does not take them)
            vec = step[0] if step else fast.serve_vec(s.paths[p], i) if i % 2 else None
            out = None if vec is None else _vec_lists(vec)
            if out is None:
                out = fast._serve_bytes(program, len(s.paths[p]), i)
            if out is None:
                out = fast._serve_sets(program, len(s.paths[p]), i)
            else:
                served += 1
                gapped += fast._snap is None   # (a gap left: held as blocks)
            assert out == Residency.serve_path(slow, s.paths[p], i), i
            assert out == sets._serve_sets(program, len(s.paths[p]), i)
            assert list(fast.state()) == list(slow.state())
            if step is None:
                assert fast.condition() == sets.condition()
            else:
                assert step[1] == sets.condition()
                assert step[2] is fast.state()
            slow.condition()
            states.append(list(slow.state()))
    assert served > (0.85 if restores else 0.7) * total
    assert gapped > 50 or not restores
    assert stepped > total / 5 or passes == "python" or not restores


def test_the_compiled_kernel_is_built_where_it_can_be():
    # setup.py builds edgesim/sim/_kernel.c as an optional extension: on a machine without a
    # C compiler or Python's headers the install goes on without it (and the Python passes
    # run). Where both are present, as on this project's machines and CI, it must have been
    # built: a compile error would otherwise pass unseen, as a slower package.
    import shutil
    import sysconfig
    from pathlib import Path

    compiler = shutil.which("cc") or shutil.which("gcc")
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not (compiler and headers):
        pytest.skip("no C compiler or no Python headers: the kernel is optional here")
    import importlib

    importlib.import_module("edgesim.sim._kernel")   # (whatever EDGESIM_NO_KERNEL says)


def test_belady_memo_is_exact_where_paths_read_shared_blocks_at_different_ops(passes):
    # Paths that read shared blocks in orders of their own (random, small): a set's blocks
    # sit at an op that depends on the path (not ``uniform``), so when two sets are next read
    # at one inference, which of them is farther depends on the path there, and a condition
    # must name it for the kept set too (``holds``: the paths there of both, on a tie). The
    # engine's memo over them (``met``, as ``_Runner.infer`` asks) must hand out only what
    # serving op by op gives, on 400 random streams and rooms; without the kept set's path
    # there in ``holds`` (C and Python) 15 of these 400 went wrong; with the set pass on a
    # stream with a set that is not ``uniform``, 4 (``_Program``).
    hits = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        nblocks, npaths = int(rng.integers(3, 7)), int(rng.integers(2, 4))
        paths = []
        for _ in range(npaths):
            blocks = [b for b in range(nblocks) if rng.random() < 0.7] or [0]
            rng.shuffle(blocks)
            paths.append([(b,) for b in blocks])
        sizes = rng.integers(1, 20, nblocks).tolist()
        seq = rng.integers(0, npaths, int(rng.integers(10, 60)))
        s = _stream(sizes, int(rng.integers(1, sum(sizes))), paths, seq)
        slow, memoised = make_policy("belady", s), make_policy("belady", s)
        memo: dict = {}
        for i, p in enumerate(seq.tolist()):
            want = Residency.serve_path(slow, s.paths[p], i)
            entries = memo.setdefault((p, memoised.memo_key(i, ())), [])
            hit = memoised.met(entries, i) if entries else None
            if hit is not None:
                memoised.restore(hit[2])
                assert hit[1] == want, (seed, i)
                hits += 1
                continue
            memoised.watch()
            assert memoised.serve_path(s.paths[p], i) == want, (seed, i)
            entries.append((memoised.condition(), want, memoised.after()))
    assert hits > 2000   # memo hits were checked, not only runs
