/* The engine's inner passes, compiled: each the same steps as the Python it stands for.
 *
 * An optional accelerator. The package installs and runs without it (setup.py builds it as an
 * optional extension; EDGESIM_NO_KERNEL=1 leaves it unused), and the Python passes stay the
 * reference: the tests run both on the same random trees and streams and require the same
 * answers, state after and condition on the future, and the same rows.
 *
 * bytes_pass(layout, program, h0, cols, theres, k, end, span, capacity, n, watched, packed)
 *     -> None, or (kept, streamed, wait, top, low, up, total, condition):
 *     residency.Belady._bytes_pass on flat int64 arrays (``_flat_layout``, ``_flat_program`` there), ``condition`` being what
 *     Belady.condition makes of the notes (None: nothing noted, or not watched). cols,
 *     theres, k: Future's chunk (``Future.raw``) and the inference's row in it (``col`` and
 *     ``there`` of ``Future.column``). packed: kept is kept, streamed and wait as one vector
 *     (bytes, int64, 3 n), streamed and wait None.
 *   layout (bytes, int64): [nsets, then per set s at 1 + 6 s: its block count m, the offsets
 *     of its cum (m + 1 values), ranks_at, by_use and ops_at (m values each), flags (1:
 *     positive, 2: in_block_order)].
 *   program (bytes, int64): [nsets, nruns, runs at, steps at, segs at, on_path per set; per
 *     run (its set or -1, ka, kb, first step, past its last step); per step (op, first seg,
 *     past its last seg); per seg (set, a, b)].
 *   None: the pass gives up (a set never read again whose order is not by block, or a second
 *     gap in a set), as the Python pass does, and nothing is changed.
 * holds(condition, col, there) -> bool: Belady.holds.
 * first(entries, cols, theres, k, nsets) -> the first memo entry whose condition holds at row
 *     k of a chunk of Future (Belady.met), or None.
 * lru_pass(order, used, capacity, sizes, path[, packed]) -> (kept, streamed, wait, order
 *     after, used after), or None: residency.LRU.serve_path (packed: kept, streamed and wait
 *     as one vector, as bytes_pass's); see lru_pass() below.
 * lru_advance(order, advance, nblocks) -> the order after an _Advance (LRU.restore), or None.
 * run(plan, vec, wasted, depth, speculative, wmem, memories, nports) ->
 *     (latency, kept bytes, streamed bytes, refetch bytes, waits): engine._run_one's timeline
 *     with the memo on and no per-op rows (engine._transfers, engine._schedule,
 *     bound.stall_bounds) in one pass; see run() below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef int64_t i64;

static Py_ssize_t left(const i64 *a, Py_ssize_t n, i64 x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (a[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static Py_ssize_t right(const i64 *a, Py_ssize_t n, i64 x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (x < a[mid]) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* a[k] as Python indexes a list of n (k = -1: the last) */
#define AT(a, n, k) ((a)[(k) < 0 ? (k) + (n) : (k)])

typedef struct {
    Py_ssize_t nsets;
    i64 span;
    i64 *keys, *live;          /* live: the sets with held bytes, in Python's list order */
    Py_ssize_t nlive;
    i64 *since_val, *since_gen, gen;   /* since: per set, its key at the last drop (-1: none) */
    unsigned char *pairs, *sets;
    i64 streak, last;
} Notes;

static void went_first(Notes *no)
{
    i64 best = no->streak;
    for (Py_ssize_t q = 0; q < no->nlive; q++) {
        i64 t = no->live[q];
        if (t == best) continue;
        i64 key = no->since_gen[t] == no->gen ? no->since_val[t] : no->keys[t];
        if (key < 0) continue;
        unsigned char *p = &no->pairs[best * no->nsets + t];
        if (no->last > key % no->span) { if (!*p) *p = 1; }
        else *p = 2;
    }
}

static void note_drop(Notes *no, i64 best, int many)
{
    if (many) no->sets[best] = 1;
    if (best != no->streak) {
        if (no->streak >= 0) went_first(no);
        no->streak = best;
    }
    no->gen++;   /* since.clear() */
}

/* n ints as a list, or as a tuple (NULL with an exception set). */
static PyObject *ints_of(const i64 *v, Py_ssize_t n, int tuple)
{
    PyObject *out = tuple ? PyTuple_New(n) : PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *x = PyLong_FromLongLong(v[k]);
        if (x == NULL) { Py_DECREF(out); return NULL; }
        if (tuple) PyTuple_SET_ITEM(out, k, x);
        else PyList_SET_ITEM(out, k, x);
    }
    return out;
}

static PyObject *list_of(const i64 *v, Py_ssize_t n) { return ints_of(v, n, 0); }

static PyObject *tuple_of(const i64 *v, Py_ssize_t n) { return ints_of(v, n, 1); }

/* A pass's per-op answers (kept, streamed and wait: 3 n values one after another) as three
 * lists, or, packed, as one int64 vector (bytes) and two None (``Residency.serve_vec``).
 * 0, or -1 with an exception set and the three NULL. */
static int answers(const i64 *v, Py_ssize_t n, int packed, PyObject **out)
{
    if (packed) {
        out[0] = PyBytes_FromStringAndSize((const char *)v, (Py_ssize_t)sizeof(i64) * 3 * n);
        out[1] = Py_NewRef(Py_None);
        out[2] = Py_NewRef(Py_None);
    } else {
        out[0] = list_of(v, n);
        out[1] = list_of(v + n, n);
        out[2] = list_of(v + 2 * n, n);
    }
    if (out[0] != NULL && out[1] != NULL && out[2] != NULL) return 0;
    Py_CLEAR(out[0]);
    Py_CLEAR(out[1]);
    Py_CLEAR(out[2]);
    return -1;
}

static int ints(PyObject *seq, i64 *out, Py_ssize_t n, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "%s: expected %zd values", what, n);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t k = 0; k < n; k++) {
        out[k] = PyLong_AsLongLong(items[k]);
        if (out[k] == -1 && PyErr_Occurred()) { Py_DECREF(fast); return -1; }
    }
    Py_DECREF(fast);
    return 0;
}

/* Belady.condition's tuple from a pass's notes: ``(((s, path there), ...), ((s, t, strict,
 * path there of s, of t), ...))``, sets and pairs in sorted order; None when nothing was
 * noted (NULL with an exception set). */
static PyObject *condition(const Notes *no, const i64 *there, Py_ssize_t ns)
{
    Py_ssize_t nsets = 0, npairs = 0;
    for (Py_ssize_t s = 0; s < ns; s++) {
        nsets += no->sets[s] != 0;
        for (Py_ssize_t t = 0; t < ns; t++) npairs += no->pairs[s * ns + t] != 0;
    }
    if (!nsets && !npairs) return Py_NewRef(Py_None);
    PyObject *sets = PyTuple_New(nsets), *pairs = PyTuple_New(npairs);
    PyObject *out = sets && pairs ? PyTuple_Pack(2, sets, pairs) : NULL;
    Py_XDECREF(sets);
    Py_XDECREF(pairs);
    if (out == NULL) return NULL;
    Py_ssize_t a = 0, b = 0;
    for (Py_ssize_t s = 0; s < ns; s++) {
        if (no->sets[s]) {
            i64 v[2] = {(i64)s, there[s]};
            PyObject *x = tuple_of(v, 2);
            if (x == NULL) { Py_DECREF(out); return NULL; }
            PyTuple_SET_ITEM(sets, a++, x);
        }
        for (Py_ssize_t t = 0; t < ns; t++) {
            unsigned char c = no->pairs[s * ns + t];
            if (!c) continue;
            i64 v[5] = {(i64)s, (i64)t, 0, there[s], there[t]};
            PyObject *x = tuple_of(v, 5);
            if (x == NULL) { Py_DECREF(out); return NULL; }
            PyObject *zero = PyTuple_GET_ITEM(x, 2);   /* (the flag: a bool) */
            PyTuple_SET_ITEM(x, 2, Py_NewRef(c == 2 ? Py_True : Py_False));
            Py_DECREF(zero);
            PyTuple_SET_ITEM(pairs, b++, x);
        }
    }
    return out;
}

static PyObject *bytes_pass(PyObject *self, PyObject *args)
{
    PyObject *lay_o, *prog_o, *h0_o, *cols_o, *theres_o;
    long long end, span, capacity;
    Py_ssize_t n, k;
    int watched, packed;
    (void)self;
    if (!PyArg_ParseTuple(args, "SSOSSnLLLnpp", &lay_o, &prog_o, &h0_o, &cols_o, &theres_o, &k,
                          &end, &span, &capacity, &n, &watched, &packed))
        return NULL;
    if (PyBytes_GET_SIZE(lay_o) < (Py_ssize_t)sizeof(i64) ||
        PyBytes_GET_SIZE(prog_o) < 5 * (Py_ssize_t)sizeof(i64)) {
        PyErr_SetString(PyExc_ValueError, "bytes_pass: not a layout and a program");
        return NULL;
    }
    const i64 *L = (const i64 *)PyBytes_AS_STRING(lay_o);
    const i64 *P = (const i64 *)PyBytes_AS_STRING(prog_o);
    Py_ssize_t ns = (Py_ssize_t)L[0];
    if (P[0] != ns || n < 0) {
        PyErr_SetString(PyExc_ValueError, "bytes_pass: layout and program disagree");
        return NULL;
    }
    Py_ssize_t rows = PyBytes_GET_SIZE(cols_o) / (Py_ssize_t)sizeof(i64) / (ns ? ns : 1);
    if (PyBytes_GET_SIZE(theres_o) != PyBytes_GET_SIZE(cols_o) || k < 0 ||
        (ns && k >= rows)) {   /* (no set: nothing is read of the chunk) */
        PyErr_SetString(PyExc_ValueError, "bytes_pass: no row k in the chunk");
        return NULL;
    }
    /* the next inference reading each set and the path there, at row k of Future's chunk */
    const i64 *col_k = (const i64 *)PyBytes_AS_STRING(cols_o) + k * ns;
    const i64 *there = (const i64 *)PyBytes_AS_STRING(theres_o) + k * ns;
    Py_ssize_t nruns = (Py_ssize_t)P[1];
    const i64 *runs = P + P[2], *steps = P + P[3], *segs = P + P[4], *on_path = P + 5;
    Py_ssize_t nsegs_all = 0;
    for (Py_ssize_t r = 0; r < nruns; r++) {   /* (and every op within the path's n) */
        const i64 *ru = runs + 5 * r;
        for (i64 st = ru[3]; st < ru[4]; st++) {
            nsegs_all += steps[3 * st + 2] - steps[3 * st + 1];
            if (steps[3 * st] < 0 || steps[3 * st] >= n) {
                PyErr_SetString(PyExc_ValueError, "bytes_pass: an op past the path's end");
                return NULL;
            }
        }
    }
    Py_ssize_t cap_live = ns + nsegs_all + 1;
    /* per set: top, low, up, keys, h0, col, since_val, since_gen; the live list; per op:
       kept, streamed, wait */
    i64 *mem = PyMem_Malloc(sizeof(i64) * (8 * ns + cap_live + 3 * n + 1));
    const i64 **ats = PyMem_Malloc(sizeof(i64 *) * (ns + 1));
    unsigned char *marks = PyMem_Calloc((size_t)(ns * ns + ns + 1), 1);
    PyObject *result = NULL;
    if (mem == NULL || ats == NULL || marks == NULL) { PyErr_NoMemory(); goto done; }
    i64 *top = mem, *low = mem + ns, *up = mem + 2 * ns, *keys = mem + 3 * ns;
    i64 *h0 = mem + 4 * ns, *col = mem + 5 * ns, *since_val = mem + 6 * ns;
    i64 *since_gen = mem + 7 * ns, *live = mem + 8 * ns;
    i64 *kept = live + cap_live, *streamed = kept + n, *wait = streamed + n;
    if (ints(h0_o, h0, ns, "bytes_pass: h0") < 0)
        goto done;
    memcpy(col, col_k, sizeof(i64) * ns);
    Notes no = {ns, span, keys, live, 0, since_val, since_gen, 1, marks, marks + ns * ns, -1, 0};
#define CUM(s) (L + L[1 + 6 * (s) + 1])
#define M(s) ((Py_ssize_t)L[1 + 6 * (s)])
#define OPS(s) (L + L[1 + 6 * (s) + 4])
#define FLAGS(s) (L[1 + 6 * (s) + 5])
#define LIVE_APPEND(s) (live[no.nlive++] = (s))
    for (Py_ssize_t s = 0; s < ns; s++) {
        i64 c = col[s];
        if (c < end) ats[s] = L + L[1 + 6 * s + 2];
        else if ((FLAGS(s) & 2) || !(h0[s] || on_path[s])) ats[s] = L + L[1 + 6 * s + 3];
        else { result = Py_None; Py_INCREF(result); goto done; }
        low[s] = up[s] = 0;
        keys[s] = 0;
        since_gen[s] = 0;
        top[s] = h0[s];
        if (on_path[s]) top[s] = 0;
        else if (top[s]) {
            LIVE_APPEND(s);
            keys[s] = c * span + AT(ats[s], M(s), left(CUM(s), M(s) + 1, top[s]) - 1);
        }
    }
    for (Py_ssize_t j = 0; j < n; j++) { kept[j] = 0; streamed[j] = 0; wait[j] = -1; }
    i64 total = 0;
    for (Py_ssize_t s = 0; s < ns; s++) total += h0[s];

    for (Py_ssize_t r = 0; r < nruns; r++) {
        const i64 *ru = runs + 5 * r;
        i64 rs = ru[0], ka = ru[1], kb = ru[2], shi = ru[4];
        if (rs >= 0) {
            const i64 *cs = CUM(rs);
            if (top[rs] == cs[ka] && h0[rs] >= cs[kb]) {   /* all held: nothing moves */
                if (since_gen[rs] != no.gen) {
                    since_gen[rs] = no.gen;
                    since_val[rs] = top[rs] ? keys[rs] : -1;
                }
                if (!top[rs]) LIVE_APPEND(rs);
                top[rs] = cs[kb];
                keys[rs] = col[rs] * span + AT(ats[rs], M(rs), kb - 1);
                continue;
            }
        }
        i64 at_step = ru[3];
        while (at_step < shi) {
            const i64 *sp = steps + 3 * at_step;
            i64 j = sp[0];
            const i64 *sg0 = segs + 3 * sp[1], *sg1 = segs + 3 * sp[2];
            at_step++;
            i64 fetched = 0, best = -1;
            for (const i64 *sg = sg0; sg < sg1; sg += 3) {
                i64 s = sg[0];
                const i64 *cs = CUM(s);
                i64 lo = cs[sg[1]], hi = cs[sg[2]], t = top[s];
                if (t != lo) {   /* read past a part it dropped: [0, low) + [up, top) */
                    if (up[s] != low[s]) { result = Py_None; Py_INCREF(result); goto done; }
                    low[s] = t;
                    up[s] = lo;
                }
                i64 held = h0[s];
                fetched += hi - (held <= lo ? lo : held >= hi ? hi : held);
                if (since_gen[s] != no.gen) {
                    since_gen[s] = no.gen;
                    since_val[s] = t ? keys[s] : -1;
                }
                if (!t) LIVE_APPEND(s);
                top[s] = hi;
                keys[s] = col[s] * span + AT(ats[s], M(s), sg[2] - 1);
            }
            total += fetched;
            i64 k = fetched, w = -1;
            while (total > capacity) {
                /* _farthest */
                i64 bk = -1, rk = -1;
                best = -1;
                for (Py_ssize_t q = 0; q < no.nlive; q++) {
                    i64 s = live[q], key = keys[s];
                    if (key > bk) { rk = bk; best = s; bk = key; }
                    else if (key > rk) rk = key;
                }
                if (best < 0) {   /* (cannot be: the op's own set holds bytes) give up */
                    result = Py_None;
                    Py_INCREF(result);
                    goto done;
                }
                const i64 *cs = CUM(best), *at = ats[best];
                Py_ssize_t m = M(best);
                i64 t = top[best], u = up[best], v = low[best];
                Py_ssize_t kt = left(cs, m + 1, t) - 1;   /* its last held block */
                if (watched) note_drop(&no, best, kt > left(cs, m + 1, u) || v > 0);
                i64 base = col[best] * span;
                int near = rk >= base;
                i64 floor = u;
                Py_ssize_t kf = 0;
                if (near) {   /* down to the first block not farther than the next set's */
                    kf = right(at, m, rk - base);
                    i64 f = AT(cs, m + 1, kf < kt ? kf : kt);
                    if (f > floor) floor = f;
                }
                i64 need = total - capacity;
                i64 nw = t - need;
                if (nw < floor) nw = floor;
                need -= t - nw;
                i64 gone = nw, under = -1;
                if (nw == u && u != v) {   /* the upper part gone: on to [0, low) */
                    if (need && v && (!near || AT(at, m, left(cs, m + 1, v) - 1) > rk - base)) {
                        under = v;
                        i64 v2 = v - need;
                        if (near && AT(cs, m + 1, kf) > v2) v2 = AT(cs, m + 1, kf);
                        else if (v2 < 0) v2 = 0;
                        need -= v - v2;
                        gone = v2;
                        v = v2;
                    }
                    nw = v;
                    low[best] = up[best] = 0;
                }
                total = capacity + need;
                if (on_path[best]) {   /* its blocks were read in this inference */
                    i64 mine = t;
                    for (const i64 *sg = sg0; sg < sg1; sg += 3) {
                        if (sg[0] != best) continue;
                        i64 lo = cs[sg[1]];
                        if (lo < mine) mine = lo;
                        i64 held = h0[best];
                        i64 fresh = held <= lo ? lo : held;
                        if (t > fresh) k -= t - (gone > fresh ? gone : fresh);
                    }
                    i64 x = under < 0 ? mine : under;
                    if (under < 0 && gone >= mine) x = -1;
                    else if (under >= 0 && u < mine) x = mine;
                    if (x > 0) {
                        i64 op = AT(OPS(best), m, right(cs, m + 1, x - 1) - 1);
                        if (op > w) w = op;
                    }
                }
                top[best] = nw;
                if (nw) keys[best] = base + AT(at, m, left(cs, m + 1, nw) - 1);
                else {   /* live.remove(best): its first occurrence */
                    for (Py_ssize_t q = 0; q < no.nlive; q++) {
                        if (live[q] == best) {
                            memmove(live + q, live + q + 1, sizeof(i64) * (no.nlive - q - 1));
                            no.nlive--;
                            break;
                        }
                    }
                }
                if (watched) no.last = AT(at, m, right(cs, m + 1, gone) - 1);
            }
            kept[j] = k;
            streamed[j] = fetched - k;
            wait[j] = w;
            if (best == rs && rs >= 0 && at_step < shi && (FLAGS(rs) & 1)) {
                /* the run's set gives way op after op to the run's end (see the Python) */
                const i64 *cs = CUM(rs);
                int many = top[rs] > 0;
                for (i64 st = at_step; st < shi; st++) {
                    const i64 *sp2 = steps + 3 * st;
                    const i64 *sg = segs + 3 * sp2[1];
                    streamed[sp2[0]] = cs[sg[2]] - cs[sg[1]];
                    many = many || sg[2] - sg[1] > 1;
                }
                if (watched) {
                    if (many) no.sets[rs] = 1;
                    const i64 *sg = segs + 3 * steps[3 * (shi - 1) + 1];
                    no.last = AT(ats[rs], M(rs), sg[1]);
                }
                break;
            }
        }
    }
    if (watched && no.streak >= 0) went_first(&no);

    {
        PyObject *kw[3];   /* (kept, streamed and wait follow one another) */
        answers(kept, n, packed, kw);
        PyObject *lk = kw[0], *ls = kw[1], *lw = kw[2];
        int gap = 0;   /* low and up only where a set has a gap (else None: no gap) */
        for (Py_ssize_t s = 0; s < ns; s++) gap = gap || low[s] != up[s];
        PyObject *tt = tuple_of(top, ns);
        PyObject *ll = gap ? list_of(low, ns) : Py_NewRef(Py_None);
        PyObject *lu = gap ? list_of(up, ns) : Py_NewRef(Py_None);
        PyObject *cond = condition(&no, there, ns);
        if (lk && ls && lw && tt && ll && lu && cond)
            result = Py_BuildValue("(OOOOOOLO)", lk, ls, lw, tt, ll, lu, (long long)total, cond);
        Py_XDECREF(lk); Py_XDECREF(ls); Py_XDECREF(lw); Py_XDECREF(tt); Py_XDECREF(ll);
        Py_XDECREF(lu); Py_XDECREF(cond);
    }
done:
    PyMem_Free(mem);
    PyMem_Free((void *)ats);
    PyMem_Free(marks);
    return result;
}

/* Belady.holds: whether the future at an inference meets a condition the byte pass (or the
 * Python passes) noted: per set its path there as it was, per pair (s, t, strict, path there of
 * s, of t) col[s] > col[t], or equal with strict false and both paths there as they were.
 * col, there: per set (ns of each). 1: it does, 0: it does not, -1: an error (set). */
static int meets(PyObject *cond, const i64 *col, const i64 *there, Py_ssize_t ns)
{
    if (!PyTuple_Check(cond) || PyTuple_GET_SIZE(cond) != 2) goto bad;
    PyObject *sets = PyTuple_GET_ITEM(cond, 0), *pairs = PyTuple_GET_ITEM(cond, 1);
    if (!PyTuple_Check(sets) || !PyTuple_Check(pairs)) goto bad;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(sets); k++) {
        PyObject *e = PyTuple_GET_ITEM(sets, k);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 2) goto bad;
        Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(e, 0));
        i64 v = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 1));
        if (PyErr_Occurred() || s < 0 || s >= ns) goto bad;
        if (there[s] != v) return 0;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(pairs); k++) {
        PyObject *e = PyTuple_GET_ITEM(pairs, k);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 5) goto bad;
        Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(e, 0));
        Py_ssize_t t = PyLong_AsSsize_t(PyTuple_GET_ITEM(e, 1));
        if (PyErr_Occurred() || s < 0 || s >= ns || t < 0 || t >= ns) goto bad;
        i64 a = col[s], b = col[t];
        if (a < b) return 0;
        if (a == b) {
            int strict = PyObject_IsTrue(PyTuple_GET_ITEM(e, 2));
            if (strict) return strict < 0 ? -1 : 0;
            i64 vs = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 3));
            i64 vt = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 4));
            if (PyErr_Occurred()) goto bad;
            if (there[s] != vs || there[t] != vt) return 0;
        }
    }
    return 1;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "holds: not a condition");
    return -1;
}

static PyObject *holds(PyObject *self, PyObject *args)
{
    PyObject *cond, *col_o, *there_o;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!O!", &cond, &PyList_Type, &col_o, &PyList_Type, &there_o))
        return NULL;
    Py_ssize_t ns = PyList_GET_SIZE(col_o);
    i64 *v = PyMem_Malloc(sizeof(i64) * (2 * ns + 1));
    if (v == NULL) return PyErr_NoMemory();
    int ok = -1;
    if (ints(col_o, v, ns, "holds: col") == 0 && ints(there_o, v + ns, ns, "holds: there") == 0)
        ok = meets(cond, v, v + ns, ns);
    PyMem_Free(v);
    if (ok < 0) return NULL;
    return PyBool_FromLong(ok);
}

/* Belady.met: the first of the memo's entries (condition or None, inference, state after)
 * whose condition holds (``meets``) at row k of a chunk of ``Future`` (per inference, per set
 * of ns: the next inference and the path there, int64), or None. */
static PyObject *first(PyObject *self, PyObject *args)
{
    PyObject *entries, *cols, *theres;
    Py_ssize_t k, ns;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!SSnn", &PyList_Type, &entries, &cols, &theres, &k, &ns))
        return NULL;
    if (ns < 0 || k < 0 || (k + 1) * ns * (Py_ssize_t)sizeof(i64) > PyBytes_GET_SIZE(cols) ||
        PyBytes_GET_SIZE(theres) != PyBytes_GET_SIZE(cols)) {
        PyErr_SetString(PyExc_ValueError, "first: row k is not in the chunk");
        return NULL;
    }
    const i64 *col = (const i64 *)PyBytes_AS_STRING(cols) + k * ns;
    const i64 *there = (const i64 *)PyBytes_AS_STRING(theres) + k * ns;
    for (Py_ssize_t q = 0; q < PyList_GET_SIZE(entries); q++) {
        PyObject *e = PyList_GET_ITEM(entries, q);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) < 1) {
            PyErr_SetString(PyExc_ValueError, "first: an entry is (condition, ...)");
            return NULL;
        }
        PyObject *cond = PyTuple_GET_ITEM(e, 0);
        int ok = cond == Py_None ? 1 : meets(cond, col, there, ns);
        if (ok < 0) return NULL;
        if (ok) {
            Py_INCREF(e);
            return e;
        }
    }
    Py_RETURN_NONE;
}

/* One transfer of run(): on its memory's port after the port's last one and after the end of
 * op cond (-1: none), taking engine._Channel.transfer_ps: the latency plus the bytes rounded up
 * to whole bursts at the rate (ceil, ps). ch->mems per memory: (port, read latency, write
 * latency, burst, read rate, write rate), ints. 0, or -1 with an exception set
 * (OverflowError: outside what this pass takes; the caller runs the Python passes). */
typedef struct {
    i64 *free_at, *ended;
    const i64 *mems;
    Py_ssize_t nports, nmem;
} Channel;

static int transfer(Channel *ch, i64 mem, int write, i64 nbytes, i64 cond, i64 *end_out)
{
    if (mem < 0 || mem >= ch->nmem) {
        PyErr_SetString(PyExc_ValueError, "run: a bad memory");
        return -1;
    }
    const i64 *m = ch->mems + 6 * mem;
    i64 port = m[0], lat = m[write ? 2 : 1], burst = m[3], rate = m[write ? 5 : 4];
    if (port < 0 || port >= ch->nports || burst <= 0 || rate <= 0 || nbytes < 0 || lat < 0) {
        PyErr_SetString(PyExc_OverflowError, "run: a memory this pass does not take");
        return -1;
    }
    __int128 moved = ((__int128)nbytes + burst - 1) / burst * burst;
    __int128 took = lat + (moved * 1000000000000LL + rate - 1) / rate;
    i64 start = ch->free_at[port];
    if (cond >= 0 && ch->ended[cond] > start) start = ch->ended[cond];
    __int128 end = start + took;
    if (end > INT64_MAX) {
        PyErr_SetString(PyExc_OverflowError, "run: a time past 64 bits");
        return -1;
    }
    *end_out = ch->free_at[port] = (i64)end;
    return 0;
}

static i64 max3(i64 a, i64 b, i64 c) { i64 m = a > b ? a : b; return m > c ? m : c; }

/* engine._run_one's timeline with the memo on and no per-op rows: the re-fetched stripes
 * (d.again), the DMA queue (engine._transfers), its times (engine._schedule) and the ops
 * that waited (bound.stall_bounds) in one pass over the ops, with no queue made.
 * run(plan, vec, wasted, depth, speculative, wmem, memories, nports)
 *     -> (latency, kept bytes, streamed bytes, refetch bytes, waits)
 *   vec (bytes, int64): per op its kept bytes, then per op its streamed bytes, then per op
 *     the op its kept bytes wait for (residency: Belady._compiled_pass, LRU._compiled_pass).
 *   plan (bytes, int64, engine._flat_plan): [n, first gated op or -1, then per op j at 2 + 6 j
 *     (compute ps, gate, same, again, first other, past its last other), then per other
 *     transfer (memory, is a write, bytes)]. memories (bytes, int64, engine._Channel.flat):
 *     per memory (port, read latency, write latency, burst, read rate, write rate).
 *   the bytes: of the inference, the streamed ones with their re-fetches; waits: [(op, ps
 *     from the op before's end to its end, its weight bytes)] for the ops that took longer
 *     than their compute time.
 * Why one pass: _transfers queues an op's transfers in op order, each waiting for an op before
 * its own, so _schedule's recurrence can take each transfer as it is made; an op that moves
 * nothing ends its compute time after the one before, which also makes it no wait
 * (stall_bounds looks at the moving ops alone for that reason). OverflowError: a time or a
 * count past 64 bits, or a memory without a burst or rate (the caller runs the Python
 * passes, which say what is wrong). */
static PyObject *run(PyObject *self, PyObject *args)
{
    Py_buffer pb, vb, cb;
    long long wasted, depth;
    int speculative;
    Py_ssize_t wmem, nports;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*LLpny*n", &pb, &vb, &wasted, &depth, &speculative, &wmem,
                          &cb, &nports))
        return NULL;
    PyObject *result = NULL;
    i64 *mem_ = NULL;
    const i64 *P = pb.buf;
    Py_ssize_t words = pb.len / (Py_ssize_t)sizeof(i64);
    if (words < 2 || P[0] < 0 || (words - 2) / 6 < P[0] || nports < 1) {
        PyErr_SetString(PyExc_ValueError, "run: a bad plan");
        goto done;
    }
    Py_ssize_t n = (Py_ssize_t)P[0], nother = (words - 2 - 6 * n) / 3;
    const i64 *ops = P + 2, *other = P + 2 + 6 * n;
    mem_ = PyMem_Malloc(sizeof(i64) * (5 * n + nports + 1));
    if (mem_ == NULL) { PyErr_NoMemory(); goto done; }
    i64 *kept = mem_, *str = mem_ + n, *wait = mem_ + 2 * n, *ended = mem_ + 3 * n;
    i64 *refetch = mem_ + 4 * n;
    Channel ch = {mem_ + 5 * n, ended, cb.buf, nports,
                  cb.len / (Py_ssize_t)sizeof(i64) / 6};
    for (Py_ssize_t k = 0; k < nports; k++) ch.free_at[k] = 0;
    if (vb.len != (Py_ssize_t)sizeof(i64) * 3 * n) {
        PyErr_SetString(PyExc_ValueError, "run: the vector is not 3 values per op of the plan");
        goto done;
    }
    memcpy(kept, vb.buf, vb.len);   /* (kept, streamed and wait follow one another) */
    i64 prev = 0, first_gated = P[1], ksum = 0, ssum = 0, rsum = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        const i64 *op = ops + 6 * j;
        refetch[j] = 0;
        if ((op[3] && str[j] &&   /* (its streamed weights pass over op[3] more stripes) */
             (__builtin_mul_overflow(op[3], str[j], &refetch[j]) ||
              __builtin_add_overflow(str[j], refetch[j], &str[j]))) ||
            __builtin_add_overflow(ksum, kept[j], &ksum) ||
            __builtin_add_overflow(ssum, str[j], &ssum) ||
            __builtin_add_overflow(rsum, refetch[j], &rsum)) {
            PyErr_SetString(PyExc_OverflowError, "run: bytes past 64 bits");
            goto done;
        }
        if (wait[j] >= j || op[1] >= j || op[4] < 0 || op[5] > nother || op[4] > op[5]) {
            PyErr_SetString(PyExc_ValueError, "run: an op waits for itself or a later one");
            goto done;
        }
        i64 g = speculative ? -1 : op[1], arrive = 0, end;
        if (wasted && j == first_gated) {   /* (Part.GUESS: nothing waits for it) */
            if (transfer(&ch, wmem, 0, wasted, max3(-1, j - depth - 1, op[1] - 1), &end))
                goto done;
        }
        if (kept[j]) {
            if (transfer(&ch, wmem, 0, kept[j], max3(j - depth - 1, wait[j], g), &end))
                goto done;
            if (end > arrive) arrive = end;
        }
        i64 s = str[j] + op[2];
        if (s) {
            if (transfer(&ch, wmem, 0, s, max3(j - 1, wait[j], g), &end)) goto done;
            if (end > arrive) arrive = end;
        }
        for (i64 k = op[4]; k < op[5]; k++) {
            const i64 *o = other + 3 * k;
            if (transfer(&ch, o[0], o[1] != 0, o[2], j - 1, &end)) goto done;
            if (end > arrive) arrive = end;
        }
        if (__builtin_add_overflow(prev, op[0], &end)) {
            PyErr_SetString(PyExc_OverflowError, "run: a time past 64 bits");
            goto done;
        }
        prev = ended[j] = arrive > end ? arrive : end;
    }
    PyObject *waits = PyList_New(0);
    if (waits == NULL) goto done;
    for (Py_ssize_t j = 0; j < n; j++) {
        i64 took = ended[j] - (j ? ended[j - 1] : 0);
        if (took > ops[6 * j]) {
            PyObject *w = Py_BuildValue("(nLL)", j, (long long)took,
                                        (long long)(kept[j] + str[j]));
            if (w == NULL || PyList_Append(waits, w)) { Py_XDECREF(w); Py_DECREF(waits); goto done; }
            Py_DECREF(w);
        }
    }
    if (__builtin_add_overflow(ksum, ssum, &prev)) {   /* (the weight bytes, summed later) */
        Py_DECREF(waits);
        PyErr_SetString(PyExc_OverflowError, "run: bytes past 64 bits");
        goto done;
    }
    result = Py_BuildValue("(LLLLN)", (long long)(n ? ended[n - 1] : 0), (long long)ksum,
                           (long long)ssum, (long long)rsum, waits);
done:
    PyMem_Free(mem_);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&cb);
    return result;
}

/* residency.LRU.serve_path on a linked list of block ids, from and to the order as a tuple.
 * lru_pass(order, used, capacity, sizes, path) -> (kept, streamed, wait, order after, used
 *     after), or None when a block id or size is out of range (the caller runs the Python
 *     pass).
 *   order: the held blocks, least recent first (LRU._snap); sizes (bytes, int64): per block;
 *   path (bytes, int64, LRU._compiled_pass): [n, then n + 1 offsets into the ids that follow,
 *     then the ids of every op's blocks in op order].
 * The same steps as the Python loop: an op's held blocks move to the most recent end; each of
 * its missing ones is streamed when larger than what could be freed beside the op's own
 * blocks, else the least recent blocks are evicted until it fits (never one of this op's:
 * they were all moved or added last) and it is added last. */
static PyObject *lru_pass(PyObject *self, PyObject *args)
{
    PyObject *order;
    long long used, capacity;
    Py_buffer sb, pb;
    int packed = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!LLy*y*|p", &PyTuple_Type, &order, &used, &capacity, &sb,
                          &pb, &packed))
        return NULL;
    PyObject *result = NULL;
    i64 *mem_ = NULL;
    const i64 *sizes = sb.buf, *P = pb.buf;
    Py_ssize_t nb = sb.len / (Py_ssize_t)sizeof(i64), words = pb.len / (Py_ssize_t)sizeof(i64);
    if (words < 2 || P[0] < 0 || P[0] > words - 2) {
        PyErr_SetString(PyExc_ValueError, "lru_pass: a bad path");
        goto done;
    }
    Py_ssize_t n = (Py_ssize_t)P[0];
    const i64 *off = P + 1, *ids = P + 2 + n;
    Py_ssize_t nids = words - 2 - n;
    for (Py_ssize_t j = 0; j < n; j++)
        if (off[j] < 0 || off[j] > off[j + 1] || off[j + 1] > nids) {
            PyErr_SetString(PyExc_ValueError, "lru_pass: a bad path");
            goto done;
        }
    /* per block (and the list's head at nb): next, prev, held, last use, stamp; per op:
       kept, streamed, wait; the misses of an op */
    mem_ = PyMem_Malloc(sizeof(i64) * (5 * (nb + 1) + 3 * n + nids + 1));
    if (mem_ == NULL) { PyErr_NoMemory(); goto done; }
    i64 *nxt = mem_, *prv = mem_ + nb + 1, *held = mem_ + 2 * (nb + 1);
    i64 *last = mem_ + 3 * (nb + 1), *stamp = mem_ + 4 * (nb + 1);
    i64 *kept = mem_ + 5 * (nb + 1), *str = kept + n, *wait = str + n, *miss = wait + n;
    const i64 head = nb;
    nxt[head] = prv[head] = head;
    for (Py_ssize_t b = 0; b < nb; b++) { held[b] = 0; last[b] = -1; stamp[b] = -1; }
#define UNLINK(b) do { nxt[prv[b]] = nxt[b]; prv[nxt[b]] = prv[b]; } while (0)
#define APPEND(b) do { prv[b] = prv[head]; nxt[b] = head; nxt[prv[head]] = b; \
                       prv[head] = b; } while (0)
    Py_ssize_t norder = PyTuple_GET_SIZE(order);
    for (Py_ssize_t k = 0; k < norder; k++) {
        i64 b = PyLong_AsLongLong(PyTuple_GET_ITEM(order, k));
        if (b == -1 && PyErr_Occurred()) goto done;
        if (b < 0 || b >= nb || held[b]) { result = Py_NewRef(Py_None); goto done; }
        held[b] = 1;
        APPEND(b);
    }
    for (Py_ssize_t k = 0; k < nids; k++)
        if (ids[k] < 0 || ids[k] >= nb || sizes[ids[k]] < 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    for (Py_ssize_t j = 0; j < n; j++) {
        kept[j] = 0;
        str[j] = 0;
        wait[j] = -1;
        Py_ssize_t nmiss = 0;
        for (i64 k = off[j]; k < off[j + 1]; k++) {
            i64 b = ids[k];
            if (held[b]) { UNLINK(b); APPEND(b); }
            else miss[nmiss++] = b;
        }
        if (nmiss) {
            i64 mine = 0, w = -1, kk = 0, s = 0;
            for (i64 k = off[j]; k < off[j + 1]; k++) {   /* the op's own held bytes, once */
                i64 b = ids[k];
                if (stamp[b] != j) { stamp[b] = j; if (held[b]) mine += sizes[b]; }
            }
            for (Py_ssize_t m = 0; m < nmiss; m++) {
                i64 b = miss[m], size = sizes[b];
                if (held[b]) continue;   /* the same block twice in one op */
                if (size > capacity - mine) { s += size; continue; }
                while (used + size > capacity) {
                    i64 victim = nxt[head];
                    if (victim == head) {   /* (cannot be: ``mine`` leaves another block) */
                        PyErr_SetString(PyExc_RuntimeError, "lru_pass: nothing to evict");
                        goto done;
                    }
                    UNLINK(victim);
                    held[victim] = 0;
                    used -= sizes[victim];
                    if (last[victim] > w) w = last[victim];
                }
                held[b] = 1;
                APPEND(b);
                used += size;
                mine += size;
                kk += size;
            }
            kept[j] = kk;
            str[j] = s;
            wait[j] = w;
        }
        for (i64 k = off[j]; k < off[j + 1]; k++) last[ids[k]] = j;
    }
#undef UNLINK
#undef APPEND
    Py_ssize_t count = 0;
    for (i64 b = nxt[head]; b != head; b = nxt[b]) count++;
    PyObject *after = PyTuple_New(count);
    if (after == NULL) goto done;
    Py_ssize_t k = 0;
    for (i64 b = nxt[head]; b != head; b = nxt[b]) {
        PyObject *x = PyLong_FromLongLong(b);
        if (x == NULL) { Py_DECREF(after); goto done; }
        PyTuple_SET_ITEM(after, k++, x);
    }
    PyObject *kw[3];   /* (kept, streamed and wait follow one another) */
    if (answers(kept, n, packed, kw)) {
        Py_DECREF(after);
        goto done;
    }
    result = Py_BuildValue("(NNNNL)", kw[0], kw[1], kw[2], after, used);
done:
    PyMem_Free(mem_);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&pb);
    return result;
}

/* residency.LRU.restore's order after an _Advance: the blocks of ``order`` not in ``advance``
 * as they were, then those of ``advance`` in its order.
 * lru_advance(order, advance, nblocks) -> tuple, or None when an id is outside [0, nblocks)
 * (the caller does it in Python). */
static PyObject *lru_advance(PyObject *self, PyObject *args)
{
    PyObject *order, *advance;
    Py_ssize_t nb;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!n", &PyTuple_Type, &order, &PyTuple_Type, &advance, &nb))
        return NULL;
    if (nb < 0) {
        PyErr_SetString(PyExc_ValueError, "lru_advance: a negative block count");
        return NULL;
    }
    Py_ssize_t no = PyTuple_GET_SIZE(order), na = PyTuple_GET_SIZE(advance);
    unsigned char *moved = PyMem_Calloc(nb + 1, 1);
    if (moved == NULL) return PyErr_NoMemory();
    PyObject *result = NULL;
    for (Py_ssize_t k = 0; k < na; k++) {
        Py_ssize_t b = PyLong_AsSsize_t(PyTuple_GET_ITEM(advance, k));
        if (b == -1 && PyErr_Occurred()) goto done;
        if (b < 0 || b >= nb) { result = Py_NewRef(Py_None); goto done; }
        moved[b] = 1;
    }
    Py_ssize_t keep = 0;
    for (Py_ssize_t k = 0; k < no; k++) {
        Py_ssize_t b = PyLong_AsSsize_t(PyTuple_GET_ITEM(order, k));
        if (b == -1 && PyErr_Occurred()) goto done;
        if (b < 0 || b >= nb) { result = Py_NewRef(Py_None); goto done; }
        keep += !moved[b];
    }
    result = PyTuple_New(keep + na);
    if (result == NULL) goto done;
    Py_ssize_t at = 0;
    for (Py_ssize_t k = 0; k < no; k++) {
        PyObject *x = PyTuple_GET_ITEM(order, k);
        if (!moved[PyLong_AsSsize_t(x)]) PyTuple_SET_ITEM(result, at++, Py_NewRef(x));
    }
    for (Py_ssize_t k = 0; k < na; k++)
        PyTuple_SET_ITEM(result, at++, Py_NewRef(PyTuple_GET_ITEM(advance, k)));
done:
    PyMem_Free(moved);
    return result;
}

/* engine._run_vec: a 62-bit digest of a vector's int64 words, for the timeline memo's key in
 * place of the vector's own hash (SipHash over its bytes: ~0.7 us for a path of 131 ops); the
 * memo then compares the vectors it finds under it, so equal digests of different vectors
 * cost a compare, never a wrong answer. Four words at a time in four lanes mixed at the end:
 * one chain of multiplies over the words waits on each (~0.6 us in place, by perf). */
static PyObject *digest(PyObject *self, PyObject *vec)
{
    (void)self;
    if (!PyBytes_Check(vec)) {
        PyErr_SetString(PyExc_TypeError, "digest: a vector (bytes) expected");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(vec);
    Py_ssize_t n = PyBytes_GET_SIZE(vec);
    const uint64_t m = 0xBF58476D1CE4E5B9ull;
    uint64_t h[4] = {0x9E3779B97F4A7C15ull ^ (uint64_t)n, 0xC2B2AE3D27D4EB4Full,
                     0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
    Py_ssize_t k = 0;
    for (; k + 32 <= n; k += 32) {
        uint64_t w[4];
        memcpy(w, p + k, 32);
        for (int q = 0; q < 4; q++) {
            h[q] = (h[q] ^ w[q]) * m;
            h[q] ^= h[q] >> 31;
        }
    }
    for (; k + 8 <= n; k += 8) {
        uint64_t w;
        memcpy(&w, p + k, 8);
        h[0] = (h[0] ^ w) * m;
        h[0] ^= h[0] >> 31;
    }
    for (; k < n; k++) h[0] = (h[0] ^ p[k]) * 0x94D049BB133111EBull;
    uint64_t x = h[0];
    for (int q = 1; q < 4; q++) {   /* (each lane mixed into the rest in turn) */
        x = (x ^ h[q]) * 0x94D049BB133111EBull;
        x ^= x >> 29;
    }
    return PyLong_FromLongLong((long long)(x >> 2));
}

static PyMethodDef methods[] = {
    {"lru_advance", lru_advance, METH_VARARGS, "LRU.restore's order after an _Advance."},
    {"lru_pass", lru_pass, METH_VARARGS, "LRU.serve_path on a linked list (see _kernel.c)."},
    {"run", run, METH_VARARGS, "engine._run_one's timeline in one pass (see _kernel.c)."},
    {"digest", digest, METH_O, "A 62-bit digest of a vector (the timeline memo's key)."},
    {"holds", holds, METH_VARARGS, "Belady.holds on a condition's tuples (see _kernel.c)."},
    {"first", first, METH_VARARGS, "Belady.met: the first memo entry that holds."},
    {"bytes_pass", bytes_pass, METH_VARARGS,
     "Belady._bytes_pass on flat arrays (see edgesim/sim/_kernel.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernel", "Belady's byte pass, compiled (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
