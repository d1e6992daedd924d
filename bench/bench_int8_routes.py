"""Routes to a faster int8 two-tower at MovieLens-100K shape, measured: kernels, tower, selection, end to end.

The served step of :class:`recommender.families.neural_two_tower.QuantizedTwoTower` (fbgemm's int8 GEMM) is
slower than the float path at 1,681 items (``bench/bench_neural.py --int8-only``). This bench measures the other
int8 routes this CPU and torch offer, on the same data, model and users as that bench (recgov's synthetic
generator at ML-100K's shape, time split, the two-tower model at its defaults, every test user):

* **scoring kernels** (users x every item): MKL sgemm (``F.linear``, float32); fbgemm (the product's int8 path);
  oneDNN's dynamic int8 linear under the ``onednn`` and ``x86`` quantised engines; oneDNN's static int8 linear
  (``torch.ops.onednn.qlinear_pointwise``: uint8 users, int8 items with one scale per item, float output; AMX
  where the CPU has it); ``torch._int_mm`` (int8 users x int8 items with **one** scale for the whole item matrix,
  int32 output, which ranks like the dequantised scores); bfloat16 ``F.linear`` (AMX-BF16; a precision
  change too, shown for reference only);
* **the user tower**: float32 as served; int8 (history and id embeddings as 8-bit rows,
  ``quantized.embedding_bag_byte_rowwise_offsets``, and the two MLP layers through ``qlinear_pointwise`` with
  activation scales calibrated once on every training user); the int8 embeddings alone;
* **the selection** (top-10 of a block of 32 users with their seen items masked): ``torch.topk`` over float
  scores and over int32 scores; and exact float re-scoring of int8 candidates: the 48 best int8 scores per
  user, kept only when the 48th lies below the 10th minus twice a bound on the quantisation error
  (``|u.v - u'.v'| <= ||u - u'|| + ||u'|| ||v - v'||`` for unit vectors, rounding at most half a step per
  component), so the lists equal the float lists exactly;
* **end to end**: user tower + scoring + seen items masked + top-10 ordered (``bench_neural``'s served step with
  the tower), float (torch and faiss ``IndexFlatIP``, as ``bench_neural`` times them) against each int8 route,
  with the NDCG@10 of each route's lists on the test positives. The **ceiling** is what int8 scoring could give
  at best if it cost nothing: (tower + served float) / (tower + served float - float scoring), from the same run.

Every job alternates within each repeat after a warm-up pass; figures are the median thread CPU time per user
over ``--repeats`` passes over the test users, 1 thread. A kernel this build or CPU lacks is reported as
unavailable and left out.

Run:  python bench/bench_int8_routes.py [--items 1682] [--batches 1,8,32,256] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402
from bench_neural import _faiss_flat, _faiss_served  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from recommender.families.neural_two_tower import (  # noqa: E402
    RETRIEVAL_BLOCK,
    TwoTowerRecommender,
    quantize_two_tower,
    select_row_top_k,
)
from recommender.feedback import FeedbackConfig  # noqa: E402
from recommender.metrics import defined_mean, ndcg_at_k  # noqa: E402
from recommender.pipeline import item_categories_for  # noqa: E402
from recommender.scoring import mask_seen  # noqa: E402
from recommender.split import SplitConfig, split, train_test_matrices  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402

K = 10
CANDIDATES = 48
INT32_FILL = int(torch.iinfo(torch.int32).min) + 1
"""A seen item's int32 score (one above the minimum, so that negating it cannot overflow)."""


def _alternate(jobs: dict[str, Callable[[], Any]], n_users: int, repeats: int) -> dict[str, float]:
    """Median thread CPU microseconds per user of each job, the jobs alternating within every repeat."""
    for job in jobs.values():
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            t0 = time.thread_time()
            job()
            times[name].append((time.thread_time() - t0) / n_users * 1e6)
    return {name: round(float(np.median(v)), 2) for name, v in times.items()}


def _over(jobs: dict[str, Callable[[Any], Any]], inputs: Any, batch: int, repeats: int) -> dict[str, float]:
    """:func:`_alternate` over every input in calls of ``batch``."""
    starts = range(0, len(inputs), batch)
    timed = {name: (lambda f=f: [f(inputs[s : s + batch]) for s in starts]) for name, f in jobs.items()}
    return _alternate(timed, len(inputs), repeats)


def _row_codes(users: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row divided by its largest absolute component and rounded to ``levels`` steps a side, and that factor."""
    factor = users.abs().amax(dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)
    return torch.round(users / factor * levels), factor


def _seen_flat(seen: sp.csr_matrix, rows: np.ndarray, width: int) -> np.ndarray:
    starts, ends = seen.indptr[rows], seen.indptr[rows + 1]
    parts = [j * width + seen.indices[a:b] for j, (a, b) in enumerate(zip(starts, ends))]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _byte_bag(packed: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sums of 8-bit embedding rows (one scale and bias per row), as ``nn.EmbeddingBag(mode="sum")`` gives in float."""
    bag = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
    return bag(packed, indices, offsets, False, 0, False, None, None, False)


def _qlinear(*args: Any) -> torch.Tensor:
    """oneDNN's static int8 linear (AMX where the CPU has it): 8-bit input and weight, fused scales and post-op."""
    return torch.ops.onednn.qlinear_pointwise(*args)


class Routes:
    """The int8 pieces of every route, built once from a :class:`QuantizedTwoTower` (each None where unavailable)."""

    def __init__(self, q: Any) -> None:
        self.q = q
        self.seen: sp.csr_matrix = q.model._binary_
        self.net = q.model.module_
        self.unavailable: dict[str, str] = {}
        items = q.item_float
        self.global_scale = float(items.abs().max()) / 127.0
        codes = torch.clamp(torch.round(items / self.global_scale), -127, 127).to(torch.int8)
        self.global_codes_t = codes.T.contiguous()
        self.item_scales = q.item_scales.float()
        self.item_zero = torch.zeros(len(self.item_scales), dtype=torch.int32)
        self.items_bf16 = items.bfloat16()
        self.qlinear_items = self._try("onednn_qlinear", lambda: torch.ops.onednn.qlinear_prepack(q.item_int8, None))
        self.dynamic: dict[str, Any] = {}
        for engine in ("onednn", "x86"):
            self.dynamic[engine] = self._try(f"dynamic_{engine}", lambda engine=engine: self._dynamic_pack(engine))
        probe = torch.ones(1, items.shape[1], dtype=torch.int8)
        self.int_mm_ok = self._try("int_mm", lambda: torch._int_mm(probe, self.global_codes_t)) is not None
        self.tower_int8 = self._try("int8_tower", self._int8_tower)

    def _try(self, name: str, build: Callable[[], Any]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return build()
        except (RuntimeError, AttributeError, NotImplementedError) as err:
            self.unavailable[name] = str(err).splitlines()[0][:160]
            return None

    def _dynamic_pack(self, engine: str) -> Any:
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            scales = self.q.item_scales.double()
            zero = torch.zeros(len(scales), dtype=torch.long)
            weight = torch._make_per_channel_quantized_tensor(self.q.item_int8, scales, zero, 0)
            packed = torch.ops.quantized.linear_prepack(weight, None)
            torch.ops.quantized.linear_dynamic(self.q.item_float[:2], packed, False)
            return packed
        finally:
            torch.backends.quantized.engine = previous

    # -- scoring kernels: users (n, dim) float32 -> scores (n, n_items)
    def score_float(self, users: torch.Tensor) -> torch.Tensor:
        return F.linear(users, self.q.item_float)

    def score_fbgemm(self, users: torch.Tensor) -> torch.Tensor:
        return self.q.item_scores(users)

    def score_qlinear(self, users: torch.Tensor) -> torch.Tensor:
        codes, _ = _row_codes(users, 63)  # 7 bits and zero point 64, as the product's path
        u8 = codes.add_(64).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(
            u8, 1.0 / 63.0, 64, self.qlinear_items, self.item_scales, self.item_zero,
            None, 1.0, 0, torch.float32, "none", [], "",
        )

    def score_int_mm(self, users: torch.Tensor) -> torch.Tensor:
        codes, _ = _row_codes(users, 127)
        return torch._int_mm(codes.to(torch.int8), self.global_codes_t)

    def score_bf16(self, users: torch.Tensor) -> torch.Tensor:
        return F.linear(users.bfloat16(), self.items_bf16)

    def scoring_kernels(self) -> dict[str, Callable[[torch.Tensor], Any]]:
        kernels: dict[str, Callable[[torch.Tensor], Any]] = {
            "float32_sgemm": self.score_float,
            "int8_fbgemm_product": self.score_fbgemm,
        }
        for engine, packed in self.dynamic.items():
            if packed is not None:
                kernels[f"int8_dynamic_{engine}"] = lambda u, p=packed: torch.ops.quantized.linear_dynamic(u, p, False)
        if self.qlinear_items is not None:
            kernels["int8_onednn_qlinear"] = self.score_qlinear
        if self.int_mm_ok:
            kernels["int8_int_mm_one_scale"] = self.score_int_mm
        kernels["bf16_linear_reference"] = self.score_bf16
        return kernels

    # -- the user tower
    def tower_float(self, rows: np.ndarray) -> torch.Tensor:
        return self.q.user_vectors(rows)

    def _int8_tower(self) -> dict[str, Any]:
        net, model = self.net, self.q.model
        lin1, lin2 = net.user_mlp[0], net.user_mlp[2]

        def weight(layer: torch.nn.Linear) -> tuple[Any, torch.Tensor]:
            w = layer.weight.detach()
            s = (w.abs().amax(dim=1) / 127.0).clamp_(min=torch.finfo(torch.float32).tiny)
            codes = torch.clamp(torch.round(w / s[:, None]), -127, 127).to(torch.int8)
            return torch.ops.onednn.qlinear_prepack(codes, None), s.float()

        with torch.inference_mode():
            rows = np.arange(self.seen.shape[0])
            r, bags, offsets, lengths = model._user_inputs(self.seen, rows)
            mean = net.history(bags, offsets) / lengths.clamp(min=1).unsqueeze(1).float()
            x = torch.cat([net.user_id(r), mean], dim=1)
            hidden = torch.relu(lin1(x))
        (p1, s1), (p2, s2) = weight(lin1), weight(lin2)
        tower = {
            "history": torch.ops.quantized.embedding_bag_byte_prepack(net.history.weight.detach()),
            "user_id": torch.ops.quantized.embedding_bag_byte_prepack(net.user_id.weight.detach()),
            "x_scale": float(x.abs().max()) / 127.0,
            "h_scale": float(hidden.max()) / 255.0,
            "w1": p1, "s1": s1, "z1": torch.zeros(len(s1), dtype=torch.int32), "b1": lin1.bias.detach().float(),
            "w2": p2, "s2": s2, "z2": torch.zeros(len(s2), dtype=torch.int32), "b2": lin2.bias.detach().float(),
        }  # fmt: skip
        self.tower_int8 = tower
        self.tower_int8_full(rows[:2])
        return tower

    def _int8_mean(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        r, bags, offsets, lengths = self.q.model._user_inputs(self.seen, rows)
        summed = _byte_bag(self.tower_int8["history"], bags, offsets)
        n = lengths.to(summed.dtype)
        mean = summed / n.clamp(min=1).unsqueeze(1)
        return r, torch.where((n > 0).unsqueeze(1), mean, torch.zeros_like(mean))

    def tower_float_functional(self, rows: np.ndarray) -> torch.Tensor:
        """The float tower with the history sum as a direct ``F.embedding_bag`` call, as the int8 towers make theirs."""
        with torch.inference_mode():
            r, bags, offsets, lengths = self.q.model._user_inputs(self.seen, rows)
            summed = F.embedding_bag(bags, self.net.history.weight, offsets, mode="sum")
            n = lengths.to(summed.dtype)
            mean = summed / n.clamp(min=1).unsqueeze(1)
            return self.net.user_vectors(r, torch.where((n > 0).unsqueeze(1), mean, torch.zeros_like(mean)))

    def tower_int8_embeddings(self, rows: np.ndarray) -> torch.Tensor:
        """8-bit history rows, the float MLP (the same ops as the float tower otherwise)."""
        with torch.inference_mode():
            r, mean = self._int8_mean(rows)
            return self.net.user_vectors(r, mean)

    def tower_int8_full(self, rows: np.ndarray) -> torch.Tensor:
        """8-bit id and history rows, both MLP layers in int8 (static activation scales), normalised."""
        t = self.tower_int8
        with torch.inference_mode():
            r, mean = self._int8_mean(rows)
            ids = _byte_bag(t["user_id"], r, torch.arange(len(rows)))
            x = torch.clamp(torch.round(torch.cat([ids, mean], dim=1) / t["x_scale"]), -127, 127).to(torch.int8)
            hs = t["h_scale"]
            h = _qlinear(x, t["x_scale"], 0, t["w1"], t["s1"], t["z1"], t["b1"], hs, 0, torch.uint8, "relu", [], "")
            out = _qlinear(h, hs, 0, t["w2"], t["s2"], t["z2"], t["b2"], 1.0, 0, torch.float32, "none", [], "")
            return F.normalize(out, dim=1)

    # -- served lists after the tower: seen items masked, top-10, ties by column
    def served(self, score: Callable[[torch.Tensor], torch.Tensor], users: torch.Tensor, rows: np.ndarray) -> Any:
        out = []
        with torch.inference_mode():
            for start in range(0, len(rows), RETRIEVAL_BLOCK):
                block, block_rows = users[start : start + RETRIEVAL_BLOCK], rows[start : start + RETRIEVAL_BLOCK]
                scores = score(block)
                fill = -np.inf if scores.dtype.is_floating_point else INT32_FILL
                s = scores.numpy()
                if len(block_rows) == 1:
                    row = s[0]
                    r = int(block_rows[0])
                    row[self.seen.indices[self.seen.indptr[r] : self.seen.indptr[r + 1]]] = fill
                    values, cols = select_row_top_k(row, K)
                    lists = np.where(values > fill, cols, -1)[None, :]
                else:
                    if scores.dtype.is_floating_point:
                        mask_seen(s, self.seen, block_rows)
                    else:
                        s.reshape(-1)[_seen_flat(self.seen, block_rows, s.shape[1])] = fill
                    v, i = torch.topk(scores, K, dim=1)
                    vals, lists = v.numpy(), i.numpy()
                    if (vals[:, 1:] == vals[:, :-1]).any():
                        order = np.lexsort((lists, -vals), axis=1)
                        lists, vals = np.take_along_axis(lists, order, axis=1), np.take_along_axis(vals, order, axis=1)
                    lists = np.where(vals > fill, lists, -1)
                out.append(lists)
        return np.vstack(out)

    def rescored(self, users: torch.Tensor, rows: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Exact float lists from int8 candidates within the quantisation-error bound (float where the bound fails)."""
        out, within = [], []
        items = self.q.item_float
        with torch.inference_mode():
            for start in range(0, len(rows), RETRIEVAL_BLOCK):
                u, block_rows = users[start : start + RETRIEVAL_BLOCK], rows[start : start + RETRIEVAL_BLOCK]
                codes, factor = _row_codes(u, 127)
                scores = torch._int_mm(codes.to(torch.int8), self.global_codes_t)
                flat = _seen_flat(self.seen, block_rows, scores.shape[1])
                scores.numpy().reshape(-1)[flat] = INT32_FILL
                approx = codes * factor / 127.0
                error = (u - approx).norm(dim=1) + approx.norm(dim=1) * (np.sqrt(u.shape[1]) * self.global_scale / 2.0)
                unit = factor[:, 0] / 127.0 * self.global_scale
                v, i = torch.topk(scores, min(CANDIDATES, scores.shape[1]), dim=1)
                floor = v[:, K - 1].double() * unit - 2.0 * error
                within.extend(((scores.double() * unit[:, None]) >= floor[:, None]).sum(dim=1).tolist())
                exact = torch.bmm(items[i], u.unsqueeze(2)).squeeze(2).masked_fill_(v == INT32_FILL, -np.inf)
                ev, pick = torch.topk(exact, K, dim=1)
                lists = torch.gather(i, 1, pick).numpy()
                evals = ev.numpy()
                if (evals[:, 1:] == evals[:, :-1]).any():
                    order = np.lexsort((lists, -evals), axis=1)
                    lists = np.take_along_axis(lists, order, axis=1)
                bad = np.flatnonzero((v[:, -1].double() * unit >= floor).numpy())
                if len(bad):  # the bound does not separate the candidates: this user's float list
                    lists[bad] = self.q.recommend_vectors(u[bad], block_rows[bad], K, int8=False)
                out.append(lists)
        return np.vstack(out), within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", default="1,8,32,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = SyntheticSpec(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=args.seed)
    dataset = generate(spec)
    train_events, test_events = split(dataset.events, SplitConfig())
    mats = train_test_matrices(train_events, test_events, FeedbackConfig())
    categories = item_categories_for(dataset, mats.train)
    model = TwoTowerRecommender(random_state=args.seed).fit(mats.train, item_categories=categories)
    q = quantize_two_tower(model)
    routes = Routes(q)
    users = np.flatnonzero(np.diff(mats.test.matrix.indptr) > 0)
    relevant = mats.test.matrix[users]
    n = len(users)
    vectors = q.user_vectors(users)
    flat = _faiss_flat(q, 1)

    # lists and their quality (blocks of RETRIEVAL_BLOCK users)
    float_lists = q.recommend_index(users, K, int8=False)
    score_routes: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"int8_fbgemm_product": routes.score_fbgemm}
    if routes.qlinear_items is not None:
        score_routes["int8_onednn_qlinear"] = routes.score_qlinear
    if routes.int_mm_ok:
        score_routes["int8_int_mm_one_scale"] = routes.score_int_mm
    towers: dict[str, Callable[[np.ndarray], torch.Tensor]] = {
        "float": routes.tower_float,
        "float_functional": routes.tower_float_functional,
        "int8_embeddings": routes.tower_int8_embeddings,
    }
    if routes.tower_int8 is not None:
        towers["int8_full"] = routes.tower_int8_full
    pipelines: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "float_torch": lambda rows: q.recommend_vectors(q.user_vectors(rows), rows, K, int8=False),
    }
    if flat is not None:  # as bench_neural times it: the whole batch in one call
        pipelines["float_faiss"] = lambda rows: _faiss_served(flat, routes.seen, rows, q.user_vectors(rows).numpy(), K)
    for name, score in score_routes.items():
        pipelines[f"{name}+tower_float"] = lambda rows, f=score: routes.served(f, routes.tower_float(rows), rows)
    best_score = routes.score_int_mm if routes.int_mm_ok else routes.score_fbgemm
    pipelines["float_torch+tower_float_functional"] = lambda rows: q.recommend_vectors(
        routes.tower_float_functional(rows), rows, K, int8=False
    )
    for tower_name in ("int8_embeddings", "int8_full"):
        if tower_name in towers:
            best_name = "int8_int_mm_one_scale" if routes.int_mm_ok else "int8_fbgemm_product"
            pipelines[f"{best_name}+tower_{tower_name}"] = (
                lambda rows, tower=towers[tower_name]: routes.served(best_score, tower(rows), rows)
            )
    if routes.int_mm_ok:
        pipelines["int8_candidates_float_rescored+tower_float"] = lambda rows: routes.rescored(
            routes.tower_float(rows), rows
        )[0]
    ndcg_float = defined_mean(ndcg_at_k(float_lists, relevant))
    quality = {}
    for name, pipeline in pipelines.items():
        lists = np.vstack([pipeline(users[s : s + RETRIEVAL_BLOCK]) for s in range(0, n, RETRIEVAL_BLOCK)])
        ndcg = defined_mean(ndcg_at_k(lists, relevant))
        quality[name] = {
            "ndcg@10": round(ndcg, 4),
            "drop_pct": round(100.0 * (ndcg_float - ndcg) / ndcg_float, 3),
            "top10_overlap": round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(lists, float_lists)])), 4),
            "lists_identical_to_float": bool(np.array_equal(lists, float_lists)),
        }
    candidates = None
    if routes.int_mm_ok:
        within = np.asarray(routes.rescored(vectors, users)[1])
        candidates = {
            "mean": round(float(within.mean()), 1),
            "p95": float(np.percentile(within, 95)),
            "max": int(within.max()),
            "kept": CANDIDATES,
        }

    timing = []
    kernels = routes.scoring_kernels()
    for batch in (int(b) for b in args.batches.split(",")):
        scoring = _over(kernels, vectors, batch, args.repeats)
        tower = _over(towers, users, batch, args.repeats)
        end_to_end = _over(pipelines, users, batch, args.repeats)
        best_float = min(end_to_end["float_torch"], end_to_end.get("float_faiss", float("inf")))
        ceiling = best_float / max(best_float - scoring["float32_sgemm"], 1e-9)
        timing.append(
            {
                "batch": batch,
                "scoring_us_per_user": scoring,
                "tower_us_per_user": tower,
                "end_to_end_us_per_user": end_to_end,
                "speedup_vs_best_float": {name: round(best_float / t, 3) for name, t in end_to_end.items()},
                "ceiling_if_int8_scoring_were_free": round(ceiling, 3),
            }
        )
        print(f"  batch {batch} done", file=sys.stderr, flush=True)
    selection = None
    if routes.int_mm_ok:
        step = RETRIEVAL_BLOCK
        blocks = [(users[s : s + step], vectors[s : s + step]) for s in range(0, n, step)]
        float_scores, int_scores = [], []
        for rows, u in blocks:
            f = routes.score_float(u).numpy().copy()
            mask_seen(f, routes.seen, rows)
            float_scores.append(torch.from_numpy(f))
            i = routes.score_int_mm(u)
            i.numpy().reshape(-1)[_seen_flat(routes.seen, rows, i.shape[1])] = INT32_FILL
            int_scores.append(i)
        selection = _alternate(
            {
                "topk_float32": lambda: [torch.topk(s, K, dim=1) for s in float_scores],
                "topk_int32": lambda: [torch.topk(s, K, dim=1) for s in int_scores],
                f"topk_int32_{CANDIDATES}": lambda: [torch.topk(s, CANDIDATES, dim=1) for s in int_scores],
            },
            n,
            args.repeats,
        )
    doc = {
        "items": mats.train.n_items,
        "test_users": n,
        "ndcg@10_float": round(ndcg_float, 4),
        "quality": quality,
        "rescoring_candidates_within_bound": candidates,
        "selection_block_us_per_user": selection,
        "timing": timing,
        "unavailable": routes.unavailable,
        "global_item_scale": routes.global_scale,
        "hardware": hardware(),
        "torch": torch.__version__,
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{mats.train.n_items} items, {n} test users, 1 thread, thread CPU us per user (median of {args.repeats}); "
        f"NDCG@10 float {doc['ndcg@10_float']}"
    )
    for name, qrow in quality.items():
        print(
            f"  {name:<48} NDCG@10 {qrow['ndcg@10']} (drop {qrow['drop_pct']}%) overlap {qrow['top10_overlap']} "
            f"identical {qrow['lists_identical_to_float']}"
        )
    print(f"  candidates within the error bound per user: {candidates}")
    print(f"  selection, blocks of {RETRIEVAL_BLOCK}: {selection}")
    for t in timing:
        print(f"batch {t['batch']}: scoring {t['scoring_us_per_user']}")
        print(f"          tower {t['tower_us_per_user']}")
        print(f"          end to end {t['end_to_end_us_per_user']}")
        print(f"          vs best float {t['speedup_vs_best_float']}")
        print(f"          ceiling if int8 scoring were free {t['ceiling_if_int8_scoring_were_free']}x")
    if routes.unavailable:
        print(f"unavailable: {routes.unavailable}")
    print(f"load average {doc['hardware']['load_average_1m']} on {doc['hardware']['cores']} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
