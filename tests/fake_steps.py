"""Stand-ins for select / reselect / pretrain / finetune that write the same files.

They let the experiment and report tests count calls and run in milliseconds; the
real pipeline is exercised by the end-to-end test.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from condpretrain.experiment import Steps


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _pool_paths(sources: list[str]) -> list[tuple[str, str, str]]:
    rows = []
    for spec in sources:
        name, _, root = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
        for image in sorted(Path(root).rglob("*.png")):
            rows.append((str(image), image.parent.name, name))
    return rows


class FakePipeline:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.resumed: list[str] = []

    def steps(self) -> Steps:
        return Steps(self.select, self.reselect, self.pretrain, self.finetune,
                     downstream=self.downstream)

    def select(self, sources, target, out, config):
        self.calls["select"] += 1
        out = Path(out)
        pool = _pool_paths(sources)
        # Deterministic fake scores: by method name and path, so methods differ.
        scored = sorted(pool, key=lambda r: hash((config.method, config.seed, r[0])) % 1000)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "pool.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("path", "label", "pool", "score"),
                                          *[(*r, len(scored) - i) for i, r in enumerate(scored)]])
        self._subset(out, scored, config.fraction)
        _write_json(out / "selection.json", {"method": config.method, "pool_size": len(pool),
                                             "selected": round(config.fraction * len(pool)),
                                             "timings": {"fit": 1.0, "score": 2.0, "total": 3.5}})
        return SimpleNamespace(seconds=3.5, selected=0, pool_size=len(pool))

    def reselect(self, scores_dir, out, fraction=None, count=None):
        self.calls["reselect"] += 1
        with open(Path(scores_dir) / "pool.csv", newline="") as handle:
            rows = [(r["path"], r["label"], r["pool"]) for r in csv.DictReader(handle)]
        selected = self._subset(Path(out), rows, fraction)
        previous = json.loads((Path(scores_dir) / "selection.json").read_text())
        _write_json(Path(out) / "selection.json",
                    {**previous, "selected": selected,
                     "timings": {**previous["timings"], "reselect": 0.5}})
        return SimpleNamespace(seconds=0.5, selected=selected, pool_size=len(rows))

    @staticmethod
    def _subset(out: Path, rows, fraction: float) -> int:
        count = max(1, round(fraction * len(rows)))
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "subset.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("path", "label", "pool", "score", "rank"),
                                          *[(*r, 1.0 / (i + 1), i + 1)
                                            for i, r in enumerate(rows[:count])]])
        return count

    def pretrain(self, sources, out, config, subset=None, resume=False):
        self.calls["pretrain"] += 1
        if resume:
            self.resumed.append(str(out))
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "backbone.pt").write_bytes(b"fake")
        images = 100 if subset is None else 10
        _write_json(out / "run.json", {"wall_seconds": images * 36.0,
                                       "device_hours": images * 0.01, "images": images,
                                       "flops": images * 1e9, "status": "done"})
        _write_json(out / "result.json", {"loss": 1.0})
        return SimpleNamespace(run_dir=out)

    def finetune(self, target, out, config, resume=False):
        self.calls["finetune"] += 1
        out = Path(out)
        base = 0.5 if config.init is None else 0.8 if "entire-pool" in config.init else 0.6
        top1 = 100 * (base + 0.01 * config.seed + 0.001 * (hash(str(out)) % 10))
        _write_json(out / "result.json", {"top1": top1, "top5": 1.0, "best_top1": top1})
        _write_json(out / "run.json", {"wall_seconds": 7.0, "device_hours": 7 / 3600})
        return SimpleNamespace(run_dir=out)

    def downstream(self, task, voc, out, config, resume=False):
        """A detect / segment run's files: its task's metrics, better from a backbone
        and better still from the entire pool's (detection AP in percent, segmentation
        scores as fractions, as the real tasks write them)."""
        self.calls[task] += 1
        if resume:
            self.resumed.append(str(out))
        out = Path(out)
        base = 0.3 if config.init is None else 0.5 if "entire-pool" in config.init else 0.4
        score = base + 0.01 * config.seed
        scores = ({"AP50": 100 * score, "AP": 50 * score, "AP75": 40 * score}
                  if task == "detect" else {"mIoU": score, "mAcc": score + 0.1,
                                            "allAcc": score + 0.2})
        _write_json(out / "result.json", {"task": task, **scores, "voc": [str(v) for v in voc]})
        _write_json(out / "run.json", {"wall_seconds": 9.0, "device_hours": 9 / 3600})
        return scores
