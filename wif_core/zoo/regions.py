"""Exact deduction for any sequence length: the activation regions of a bias-free ReLU RNN.

With no biases the RNN is piecewise linear and positively homogeneous. Fix which neurons are
active at every step (a *pattern*) and every hidden state is a linear map of the input,
``h_t = D_t (W_hh h_{t−1} + W_hi x_t) = H_t x``; the inputs that produce the pattern form a
polyhedral cone ``{x : A x ≤ 0}`` (one row per neuron and step). Intersected with the order of
the inputs and with "logit j is the largest", each cone splits into pieces on which the answer
is fixed, so the accuracy is the Gaussian measure of the correct pieces.

Patterns are enumerated step by step: each neuron's pre-activation hyperplane splits every
cone, and a side is kept only if a linear programme (HiGHS, through ``scipy.optimize.linprog``)
finds it a point at positive depth. A cone's measure is exact where the dimension allows:
n = 2 by angles, n = 3 by spherical polygon area (the cone meets the unit sphere in a convex
spherical polygon, cut into triangles whose solid angles have a closed form). For n ≥ 4 the
pieces are not measured exactly: the accuracy is then a randomized quasi-Monte Carlo estimate
(scrambled Sobol points, replicated for a standard error), stated as such in ``method``.

The region count grows with every step (each of d hyperplanes may cut each cone), so the
method is cheap for M2,2 and M4,3 and hopeless for M16,10; ``max_regions`` stops it with one
line that says so.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.zoo.evaluate import target_rank
from wif_core.zoo.models import ZooModel, ZooRNN

DEPTH = 1e-9  # a cone is kept when a point lies this far inside every face (|x|∞ ≤ 1)
FOUR_PI = 4 * math.pi


@dataclass(kw_only=True)
class Region:
    """One activation pattern's cone: its Gaussian mass and the part of it where the answer is right."""

    pattern: tuple[int, ...]  # per step, the active neurons as a bitmask (neuron i is bit i)
    mass: float
    correct_mass: float
    constraints: int


@dataclass(kw_only=True)
class RegionDeduction:
    """The accuracy as a sum over activation regions, with what it took."""

    model: str
    accuracy: float
    error: float
    stderr: float  # 0 where every cone is measured exactly (n ≤ 3)
    method: str
    exact: bool
    regions: list[Region]
    regions_per_step: list[int]
    lp_calls: int
    flops: int
    seconds: float
    mass_total: float
    detail: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def n_regions(self) -> int:
        return len(self.regions)


@dataclass
class _Cone:
    rows: list[np.ndarray]  # unit normals a with a·x ≤ 0
    point: np.ndarray  # a point inside (from the last LP, or inherited)
    H: np.ndarray  # [d, n]: the hidden state as a linear map of the input
    pattern: tuple[int, ...]


class _Counter:
    """FLOPs and LP calls, counted as the deduction goes (LP pivots counted as dense: 2·rows·cols each)."""

    def __init__(self) -> None:
        self.flops = 0
        self.lp = 0


def applicable(model: ZooModel) -> str | None:
    """None if the region method covers this model (a position-task RNN), else why not."""
    if not isinstance(model, ZooRNN) or target_rank(model.spec.task, model.spec.n) is None:
        s = model.spec
        return f"the region method covers RNNs on 2nd argmax or argmedian; model {s.name} is a {s.arch} on {s.task}"
    return None


def _interior(rows: list[np.ndarray], n: int, count: _Counter) -> np.ndarray | None:
    """A point at depth ≥ DEPTH inside ``{a·x ≤ 0}`` within the box |x|∞ ≤ 1 (Chebyshev LP), else None."""
    with heavy_imports():
        from scipy.optimize import linprog

    A = np.vstack(rows)
    A_ub = np.hstack([A, np.ones((len(rows), 1))])  # a·x + s ≤ 0: depth s from every (unit-normal) face
    c = np.zeros(n + 1)
    c[-1] = -1.0
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(len(rows)), bounds=[(-1, 1)] * n + [(0, 1)], method="highs")
    count.lp += 1
    count.flops += 2 * len(rows) * (n + 2) * (int(getattr(res, "nit", 0) or 0) + 1)
    if res.status != 0 or -res.fun < DEPTH:
        return None
    return np.asarray(res.x[:n])


def _split(cone: _Cone, w: np.ndarray, n: int, count: _Counter) -> list[tuple[_Cone, int]]:
    """The feasible sides of the hyperplane ``w·x = 0`` within the cone: (child, 1 if w·x ≥ 0 there)."""
    norm = float(np.linalg.norm(w))
    if norm < 1e-12:  # the pre-activation is identically zero: the neuron is off, nothing is cut
        return [(cone, 0)]
    u = w / norm
    count.flops += 4 * n
    out = []
    for bit, row in ((1, -u), (0, u)):
        rows = [*cone.rows, row]
        # the known point strictly on this side proves it feasible; otherwise one LP decides
        point = cone.point if float(row @ cone.point) < -DEPTH else _interior(rows, n, count)
        if point is not None:
            out.append((_Cone(rows, point, cone.H, cone.pattern), bit))
    return out


def enumerate_regions(
    model: ZooRNN, max_regions: int = 200_000, count: _Counter | None = None
) -> tuple[list[_Cone], list[int]]:
    """Every feasible activation pattern's cone after the last step, and the count after each step."""
    count = count or _Counter()
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    W_hi, W_hh = w["W_hi"], w["W_hh"]
    n, d = model.spec.n, model.spec.hidden
    start = np.linspace(1.0, 2.0, n) * np.where(np.arange(n) % 2 == 0, 1.0, -1.0) / 2.0  # any point: no faces yet
    cones = [_Cone([], start, np.zeros((d, n)), ())]
    per_step: list[int] = []
    for t in range(n):
        nxt = []
        for cone in cones:
            pre = W_hh @ cone.H
            pre[:, t] += W_hi
            count.flops += 2 * d * d * n + d
            parts = [(cone, 0)]
            for i in range(d):
                parts = [(child, mask | (bit << i)) for c, mask in parts for child, bit in _split(c, pre[i], n, count)]
            for child, mask in parts:
                active = np.array([(mask >> i) & 1 for i in range(d)], dtype=float)
                nxt.append(_Cone(child.rows, child.point, active[:, None] * pre, (*cone.pattern, mask)))
            if len(nxt) > max_regions:
                raise InputError(
                    f"model {model.spec.name}: more than {max_regions:,} activation regions after step {t + 1} of "
                    f"{n} (counts so far {per_step + [len(nxt)]}); the region method stops scaling here: use "
                    "--method sampling or importance, or raise max_regions"
                )
        cones = nxt
        per_step.append(len(cones))
    return cones, per_step


def answer_pieces(L: np.ndarray, n: int, rank: int) -> list[list[np.ndarray]]:
    """For logits ``L x`` (rows per position), the cones (as unit-normal rows) where the pick is right.

    Position j is picked where ``(L_k − L_j)·x ≤ 0`` for every k; it is right where exactly ``rank``
    inputs exceed x_j: one piece per set S of that many positions above it. Ties go to the first
    position, as argmax breaks them; they matter only where two logits are identical maps (all
    neurons off: every logit is 0 and position 0 is picked).
    """
    pieces = []
    eye = np.eye(n)
    for j in range(L.shape[0]):
        wins = [L[k] - L[j] for k in range(L.shape[0]) if k != j]
        if any(float(np.abs(L[k] - L[j]).max()) <= 1e-12 for k in range(j)):
            continue  # an identical earlier logit wins every tie (argmax takes the first): j is never picked
        others = [k for k in range(n) if k != j]
        for above in itertools.combinations(others, rank):
            order = [eye[j] - eye[s] for s in above] + [eye[s] - eye[j] for s in others if s not in above]
            rows = [r / nr for r in wins + order if (nr := float(np.linalg.norm(r))) > 1e-12]
            pieces.append(rows)
    return pieces


# ---- exact measures of cones ---------------------------------------------------------------------------


def _mass_2d(A: np.ndarray) -> float:
    """Gaussian mass of ``{x ∈ ℝ² : A x ≤ 0}``: its angle / 2π, summed over the four quadrants (each piece pointed)."""
    total = 0.0
    for q, (s1, s2) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        rows = np.vstack([A, [[-s1, 0.0], [0.0, -s2]]]) if len(A) else np.array([[-s1, 0.0], [0.0, -s2]])
        cand = [np.array([s1, 0.0]), np.array([0.0, s2])]
        for a in rows:
            perp = np.array([-a[1], a[0]])
            nr = float(np.linalg.norm(perp))
            if nr > 1e-300:
                cand += [perp / nr, -perp / nr]
        base = q * math.pi / 2
        angles = [(math.atan2(v[1], v[0]) - base) % (2 * math.pi) for v in cand if float((rows @ v).max()) <= 1e-12]
        angles = [a if a < 3 * math.pi / 2 else a - 2 * math.pi for a in angles]
        if len(angles) >= 2:
            total += max(0.0, max(angles) - min(angles)) / (2 * math.pi)
    return total


def _vertices_3d(A: np.ndarray) -> np.ndarray:
    """Unit extreme rays of the cone ``{A x ≤ 0}`` in ℝ³ (pairwise plane intersections inside every face)."""
    i, j = np.triu_indices(len(A), k=1)
    v = np.cross(A[i], A[j])
    nr = np.linalg.norm(v, axis=1)
    v = v[nr > 1e-12] / nr[nr > 1e-12, None]
    v = np.vstack([v, -v])
    v = v[(v @ A.T).max(axis=1) <= 1e-11]
    unique: list[np.ndarray] = []
    for p in v:
        if all(float(np.dot(p - q, p - q)) > 1e-18 for q in unique):
            unique.append(p)
    return np.array(unique).reshape(-1, 3)


def _triangle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Solid angle of the spherical triangle abc (unit vectors; Van Oosterom and Strackee)."""
    num = abs(float(np.dot(a, np.cross(b, c))))
    den = 1.0 + float(a @ b) + float(b @ c) + float(c @ a)
    return 2.0 * math.atan2(num, den)


def _pointed_area(V: np.ndarray) -> float:
    """Area of the convex spherical polygon with vertices V (all within an open hemisphere)."""
    c = V.sum(axis=0)
    c /= np.linalg.norm(c)
    e1 = V[0] - (V[0] @ c) * c
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    order = np.argsort(np.arctan2(V @ e2, V @ e1))
    V = V[order]
    return sum(_triangle(c, V[k], V[(k + 1) % len(V)]) for k in range(len(V)))


OCTANTS = np.array(list(itertools.product((1.0, -1.0), repeat=3)))


def _mass_3d(A: np.ndarray) -> float:
    """Gaussian mass of ``{x ∈ ℝ³ : A x ≤ 0}``: its spherical area / 4π.

    A pointed cone (extreme rays all within an open hemisphere) is one convex polygon; any other
    (a half-space, a wedge, an empty cone) is cut by the eight octants into pointed pieces.
    """
    if len(A) >= 3:
        V = _vertices_3d(A)
        if len(V) >= 3:
            c = V.sum(axis=0)
            if np.linalg.norm(c) > 1e-9 and (V @ (c / np.linalg.norm(c))).min() > 1e-9:
                return _pointed_area(V) / FOUR_PI
    total = 0.0
    for signs in OCTANTS:
        rows = np.vstack([A, -np.diag(signs)]) if len(A) else -np.diag(signs)
        V = _vertices_3d(rows)
        if len(V) >= 3:
            total += _pointed_area(V) / FOUR_PI
    return total


def cone_mass(rows: list[np.ndarray], n: int) -> float:
    """Exact Gaussian mass of the cone ``{a·x ≤ 0 for every row}`` in ℝⁿ for n ≤ 3."""
    A = np.vstack(rows) if rows else np.zeros((0, n))
    if n == 2:
        return _mass_2d(A)
    if n == 3:
        return _mass_3d(A)
    raise InputError(f"exact cone measures cover n ≤ 3; n = {n} is measured by quasi-Monte Carlo")


# ---- the deduction ---------------------------------------------------------------------------------------


def deduce_regions(
    model: ZooModel,
    max_regions: int = 200_000,
    qmc_points: int = 2**16,
    qmc_replicates: int = 8,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> RegionDeduction:
    """The accuracy of a position-task RNN as the Gaussian measure of its correct activation regions.

    Exact (to floating point) for n ≤ 3. For n ≥ 4 the regions are still enumerated, but the
    accuracy is a randomized QMC estimate over ``qmc_replicates`` scrambles of ``qmc_points``
    Sobol points (seeded by ``seed``), with its standard error.
    """
    why = applicable(model)
    if why:
        raise InputError(why)
    assert isinstance(model, ZooRNN)
    start = time.perf_counter()
    count = _Counter()
    cones, per_step = enumerate_regions(model, max_regions, count)
    n, d = model.spec.n, model.spec.hidden
    rank = target_rank(model.spec.task, n)
    assert rank is not None
    W_oh = model.W_oh.detach().double().numpy()
    if progress:
        progress(f"{len(cones):,} regions ({count.lp:,} LPs); measuring")
    if n <= 3:
        regions = []
        for cone in cones:
            L = W_oh @ cone.H
            count.flops += 2 * W_oh.shape[0] * d * n
            mass = cone_mass(cone.rows, n)
            right = 0.0
            for piece in answer_pieces(L, n, rank):
                rows = cone.rows + piece
                right += cone_mass(rows, n)
                count.flops += _measure_flops(len(rows), n)
            count.flops += _measure_flops(len(cone.rows), n)
            regions.append(Region(pattern=cone.pattern, mass=mass, correct_mass=right, constraints=len(cone.rows)))
        correct = math.fsum(r.correct_mass for r in regions)
        stderr, method, exact = 0.0, "exact: " + ("angles" if n == 2 else "spherical polygon areas"), True
    else:
        regions, correct, stderr = _qmc(model, cones, count, points=qmc_points, replicates=qmc_replicates, seed=seed)
        method, exact = (
            f"regions by LP; masses by randomized QMC ({qmc_replicates} × {qmc_points:,} Sobol points)",
            False,
        )
    return RegionDeduction(
        model=model.spec.name,
        accuracy=correct,
        error=1.0 - correct,
        stderr=stderr,
        method=method,
        exact=exact,
        regions=regions,
        regions_per_step=per_step,
        lp_calls=count.lp,
        flops=count.flops,
        seconds=time.perf_counter() - start,
        mass_total=math.fsum(r.mass for r in regions),
    )


def _measure_flops(rows: int, n: int) -> int:
    """Arithmetic of one exact cone measure: the pairwise intersections checked against every face."""
    if n == 2:
        return 4 * (2 * rows + 4) * (rows + 2)
    pairs = rows * (rows - 1) // 2
    return pairs * (9 + 2 * 2 * 3 * rows) + 60 * rows


def _qmc(
    model: ZooRNN, cones: list[_Cone], count: _Counter, *, points: int, replicates: int, seed: int
) -> tuple[list[Region], float, float]:
    """Region masses and the accuracy from scrambled Sobol points (n ≥ 4), with the replicates' standard error."""
    with heavy_imports():
        from scipy.stats import norm, qmc

    w = {k: v.double().numpy() for k, v in model.weights().items()}
    n, d = model.spec.n, model.spec.hidden
    rank = target_rank(model.spec.task, n)
    assert rank is not None
    index = {c.pattern: k for k, c in enumerate(cones)}
    mass = np.zeros(len(cones))
    right = np.zeros(len(cones))
    accs = []
    for r in range(replicates):
        u = qmc.Sobol(d=n, scramble=True, seed=seed * 1_000 + r).random(points)
        x = norm.ppf(np.clip(u, 1e-16, 1 - 1e-16))  # [B, n]
        h = np.zeros((points, d))
        keys = np.zeros((points, n), dtype=np.int64)
        for t in range(n):
            pre = h @ w["W_hh"].T + x[:, t, None] * w["W_hi"]
            on = pre > 0
            keys[:, t] = (on * (1 << np.arange(d))).sum(axis=1)
            h = np.where(on, pre, 0.0)
        pick = (h @ w["W_oh"].T).argmax(axis=1)
        chosen = x[np.arange(points), pick]
        ok = (x > chosen[:, None]).sum(axis=1) == rank
        count.flops += points * model.flops_per_sample()
        accs.append(float(ok.mean()))
        for key, good in zip(map(tuple, keys.tolist()), ok.tolist(), strict=True):
            k = index.get(key)
            if k is not None:
                mass[k] += 1.0 / (points * replicates)
                right[k] += good / (points * replicates)
    regions = [
        Region(pattern=c.pattern, mass=float(mass[k]), correct_mass=float(right[k]), constraints=len(c.rows))
        for k, c in enumerate(cones)
    ]
    stderr = float(np.std(accs, ddof=1) / math.sqrt(replicates)) if replicates > 1 else math.nan
    return regions, float(np.mean(accs)), stderr


# ---- one region from its pattern, and a budgeted estimate ---------------------------------------------


def cone_of(model: ZooRNN, pattern: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """The faces (unit normals, ``a·x ≤ 0``) of one pattern's cone and the logits ``L`` (``logits = L x``) on it."""
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    n, d = model.spec.n, model.spec.hidden
    H = np.zeros((d, n))
    rows = []
    for t, mask in enumerate(pattern):
        pre = w["W_hh"] @ H
        pre[:, t] += w["W_hi"]
        active = np.array([(mask >> i) & 1 for i in range(d)], dtype=float)
        for i in range(d):
            nr = float(np.linalg.norm(pre[i]))
            if nr > 1e-12:
                rows.append((-pre[i] if active[i] else pre[i]) / nr)
        H = active[:, None] * pre
    return rows, w["W_oh"] @ H


def region_error(
    model: ZooRNN, pattern: tuple[int, ...], max_flops: float = math.inf
) -> tuple[float, float, int] | None:
    """One region's exact (mass, wrong mass, FLOPs) for n ≤ 3, from its pattern alone (no enumeration).

    None, at the cost of building the faces only, when measuring it would take more than ``max_flops``.
    """
    n, d = model.spec.n, model.spec.hidden
    rank = target_rank(model.spec.task, n)
    assert rank is not None
    rows, L = cone_of(model, pattern)
    pieces = answer_pieces(L, n, rank)
    flops = n * (2 * d * d * n + 4 * d * n) + 2 * L.shape[0] * d * n + _measure_flops(len(rows), n)
    flops += sum(_measure_flops(len(rows) + len(piece), n) for piece in pieces)
    if flops > max_flops:
        return None
    mass = cone_mass(rows, n)
    right = math.fsum(cone_mass(rows + piece, n) for piece in pieces)
    return mass, max(0.0, mass - right), flops


def _codes(keys: np.ndarray, d: int) -> np.ndarray:
    """Patterns ``[B, n]`` as one integer each (n·d ≤ 62 bits)."""
    return (keys << (d * np.arange(keys.shape[1], dtype=np.int64))).sum(axis=1)


def patterns_and_correct(model: ZooRNN, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For inputs ``x [B, n]``: each one's activation pattern (``[B, n]`` bitmasks) and whether it is answered right."""
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    n, d = model.spec.n, model.spec.hidden
    rank = target_rank(model.spec.task, n)
    h = np.zeros((len(x), d))
    keys = np.zeros((len(x), n), dtype=np.int64)
    bits = 1 << np.arange(d, dtype=np.int64)
    for t in range(n):
        pre = h @ w["W_hh"].T + x[:, t, None] * w["W_hi"]
        on = pre > 0
        keys[:, t] = on.astype(np.int64) @ bits
        h = np.where(on, pre, 0.0)
    pick = (h @ w["W_oh"].T).argmax(axis=1)
    chosen = x[np.arange(len(x)), pick]
    return keys, (x > chosen[:, None]).sum(axis=1) == rank


@dataclass(kw_only=True)
class Stratified:
    """What the budgeted estimate did: regions computed exactly, their error mass, samples for the rest."""

    accuracy: float
    flops: int
    pilot: int
    exact_regions: int
    exact_error: float
    exact_mass: float
    rest_samples: int
    rest_error: float


def stratified_estimate(model: ZooRNN, budget: int, seed: int = 0, pilot_share: float = 0.25) -> Stratified:
    """Exact on the regions that carry the most error, plain sampling for the rest; unbiased.

    A pilot of ``pilot_share`` × budget samples ranks the activation patterns by how many of
    its samples they got wrong; the heaviest are then measured exactly (their mass and wrong
    mass, n ≤ 3) until another ``pilot_share`` of the budget's FLOPs is spent; what is left
    of the budget goes to fresh samples, which estimate the error outside those regions. The
    regions are picked from the pilot alone, so the fresh samples estimate the rest without
    bias, and the exact regions add no variance.
    """
    n, d = model.spec.n, model.spec.hidden
    if n * d > 62:
        raise InputError(f"model {model.spec.name}: stratified regions need n·hidden ≤ 62 (here {n * d})")
    f = model.flops_per_sample()
    rng = np.random.default_rng([seed, 19])
    pilot = max(1, int(budget * pilot_share))
    keys, ok = patterns_and_correct(model, rng.standard_normal((pilot, n)))
    codes, counts = np.unique(_codes(keys[~ok], d), return_counts=True)
    first = {int(c): tuple(int(v) for v in k) for c, k in zip(_codes(keys[~ok], d), keys[~ok], strict=True)}
    spent, left = pilot * f, budget * pilot_share * f  # FLOPs spent, and left for exact regions
    exact: list[int] = []
    err_mass, mass_in = 0.0, 0.0
    for code in codes[np.lexsort((codes, -counts))]:
        got = region_error(model, first[int(code)], max_flops=left)
        if got is None:
            break
        mass, err, cost = got
        exact.append(int(code))
        err_mass, mass_in, spent, left = err_mass + err, mass_in + mass, spent + cost, left - cost
    rest = max(budget - pilot - math.ceil((spent - pilot * f) / f), 1)
    pilot_ok = ok
    keys, ok = patterns_and_correct(model, rng.standard_normal((rest, n)))
    outside = ~np.isin(_codes(keys, d), np.array(exact, dtype=np.int64))
    rest_error = float((~ok & outside).mean())
    if not exact:  # nothing was picked from the pilot, so its samples are as good as fresh ones
        rest_error = float((~np.concatenate([pilot_ok, ok])).mean())
    return Stratified(
        accuracy=1.0 - err_mass - rest_error,
        flops=spent + rest * f,
        pilot=pilot,
        exact_regions=len(exact),
        exact_error=err_mass,
        exact_mass=mass_in,
        rest_samples=rest,
        rest_error=rest_error,
    )


def region_growth(model: ZooRNN, max_regions: int) -> tuple[list[int], int, float, bool]:
    """How the region count grows step by step until ``max_regions``: (counts per step, LPs, seconds, finished).

    The last count is where it stopped (the step that passed ``max_regions``) when not finished.
    """
    count = _Counter()
    start = time.perf_counter()
    try:
        _, per_step = enumerate_regions(model, max_regions, count)
        return per_step, count.lp, time.perf_counter() - start, True
    except InputError as exc:
        counts = str(exc).split("counts so far [")[1].split("]")[0]
        return [int(c) for c in counts.split(", ")], count.lp, time.perf_counter() - start, False
