"""Diagnosis: which MiniLM features a moderation head can separate the categories with.

    RLHF_SHARED_DATA=/path/to/shared/data python bench/moderation_pooling.py [--data_dir RUN/data]

Embeds the real recipe's train and test splits once with the frozen MiniLM encoder and fits the same
weighted logistic regression per category (rlhf.moderation.pooled.fit_linear_head) on two feature sets:
what ``BertForSequenceClassification`` classifies (the [CLS] vector through BERT's masked-LM pooler,
dense + tanh) and the mean of the token vectors (what all-MiniLM-L6-v2 was trained to output). A third
fit uses mean pooling without class weights. Prints test AUPRC per category and overall (highest
category score) for each. Then the head alone, trained the way the Trainer trained it (AdamW, batch 16,
5 epochs, fresh head) on the frozen [CLS]-pooler features at lr 5e-5 and 1e-3. The last line is a JSON object (``ratio`` = mean-pooled / [CLS]-pooler overall
AUPRC).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="a run's data/ folder (default: build the mixture)")
    parser.add_argument("--max_length", type=int, default=64)
    bench = parser.parse_args()
    import torch
    import yaml
    from transformers import AutoModel, AutoTokenizer

    from rlhf.moderation.backbone import minilm_path
    from rlhf.moderation.metrics import average_precision
    from rlhf.moderation.mixture import build_mixture, write_mixture
    from rlhf.moderation.pooled import fit_linear_head, mean_pool, positive_weights

    if bench.data_dir is None:
        if not os.environ.get("RLHF_SHARED_DATA") and not (ROOT.parent / "shared" / "data").is_dir():
            os.environ["RLHF_SHARED_DATA"] = "/work/shared/data"
        recipe = yaml.safe_load((ROOT / "configs" / "moderation-real" / "moderation-train.yaml").read_text())
        data_dir = write_mixture(build_mixture(recipe["dataset_mixture"]), tempfile.mkdtemp())
        categories = recipe["categories"]
    else:
        data_dir = Path(bench.data_dir)
        categories = None
    splits = {
        name: [json.loads(line) for line in (Path(data_dir) / f"{name}.jsonl").read_text().splitlines()]
        for name in ("train", "test")
    }
    if categories is None:
        categories = sorted({c for r in splits["train"] for c in r["categories"]})
    path = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).eval()  # BertModel with its pooler

    @torch.inference_mode()
    def features(texts):
        cls, mean = [], []
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start : start + 64], truncation=True, max_length=bench.max_length,
                              padding=True, return_tensors="pt")  # fmt: skip
            out = encoder(**batch)
            cls.append(out.pooler_output)
            mean.append(mean_pool(out.last_hidden_state, batch["attention_mask"]))
        return torch.cat(cls), torch.cat(mean)

    labels = {
        n: torch.tensor([[float(c in r["categories"]) for c in categories] for r in rows])
        for n, rows in splits.items()
    }
    feats = {n: features([r["text"] for r in rows]) for n, rows in splits.items()}
    unsafe = [r["unsafe"] for r in splits["test"]]
    summary = {}
    for name, index, weighted in (("cls_pooler", 0, True), ("mean", 1, True), ("mean_unweighted", 1, False)):
        x_train, x_test = feats["train"][index], feats["test"][index]
        weight = positive_weights(labels["train"]) if weighted else None
        w, b = fit_linear_head(x_train, labels["train"], weight)
        scores = torch.sigmoid(x_test @ w.T + b)
        per = {
            c: average_precision(labels["test"][:, k].tolist(), scores[:, k].tolist())
            for k, c in enumerate(categories)
        }
        overall = average_precision(unsafe, scores.max(1).values.tolist())
        summary[name] = {"overall_auprc": overall, **{f"{c}_auprc": v for c, v in per.items()}}
        print(f"{name:<16} overall AUPRC {overall:.3f}  " + "  ".join(f"{c} {v:.2f}" for c, v in per.items()))
    # The head alone, trained like the Trainer trains it (AdamW, batch 16, ~5 epochs, fresh N(0, 0.02) head)
    # on the frozen [CLS]-pooler features, at the encoder's learning rate and at a head's.
    for lr in (5e-5, 1e-3):
        torch.manual_seed(0)
        head = torch.nn.Linear(feats["train"][0].shape[1], len(categories))
        torch.nn.init.normal_(head.weight, std=0.02)
        torch.nn.init.zeros_(head.bias)
        optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
        x, y = feats["train"][0], labels["train"]
        for _ in range(5):
            for idx in torch.randperm(len(x)).split(16):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            scores = torch.sigmoid(head(feats["test"][0]))
        per = {
            c: average_precision(labels["test"][:, k].tolist(), scores[:, k].tolist())
            for k, c in enumerate(categories)
        }
        overall = average_precision(unsafe, scores.max(1).values.tolist())
        name = f"cls_adam_lr{lr:g}"
        summary[name] = {
            "overall_auprc": overall,
            "max_score": float(scores.max()),
            **{f"{c}_auprc": v for c, v in per.items()},
        }
        print(
            f"{name:<16} overall AUPRC {overall:.3f}  highest score {float(scores.max()):.3f}  "
            + "  ".join(f"{c} {v:.2f}" for c, v in per.items())
        )
    summary["ratio"] = summary["mean"]["overall_auprc"] / summary["cls_pooler"]["overall_auprc"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
