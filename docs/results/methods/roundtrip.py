"""Round trip on the real model: `predict --file` and `export` against each methods run's predictions.csv.

Usage (from the project root, after `python main.py --config configs/methods.yaml`):
    python docs/results/methods/roundtrip.py OUT.json RUN_ID ...
For each run: its first 200 test texts through `main.py predict --file` (label agreement and the largest
probability difference) and through the folder `main.py export` writes, loaded with transformers (and PEFT
for the methods that cannot merge): label agreement."""
import subprocess, sys, json
import numpy as np, pandas as pd, torch
from pathlib import Path
from transformers import AutoModelForSequenceClassification, AutoTokenizer
Path("/tmp/rt").mkdir(parents=True, exist_ok=True)  # scratch: the texts, predictions and exports
out = {}
for run in sys.argv[2:]:
    folder = Path("results/methods") / run
    pred = pd.read_csv(folder / "predictions.csv").head(200)
    pred[["text"]].to_csv(f"/tmp/rt/{run}.csv", index=False)
    subprocess.run([sys.executable, "main.py", "predict", run, "--config", "configs/methods.yaml", "--file",
                    f"/tmp/rt/{run}.csv", "--out", f"/tmp/rt/{run}.pred.csv"], check=True, capture_output=True)
    again = pd.read_csv(f"/tmp/rt/{run}.pred.csv")
    cols = [c for c in pred.columns if c.startswith("prob_")]
    agree = (again["predicted"].to_numpy() == pred["predicted"].to_numpy()).mean() if "predicted" in again else None
    diff = np.abs(again[cols].to_numpy() - pred[cols].to_numpy()).max()
    exp = Path(f"/tmp/rt/{run}-export"); subprocess.run(["rm", "-rf", str(exp)])
    r = subprocess.run([sys.executable, "main.py", "export", run, str(exp), "--config", "configs/methods.yaml"], capture_output=True, text=True)
    export_agree = None
    if r.returncode == 0:
        files = sorted(p.name for p in exp.iterdir())
        try:
            if (exp / "adapter").is_dir():  # prompt, prefix, P-tuning: base model + adapter (README: export)
                from peft import PeftModel
                model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(exp),
                                                  str(exp / "adapter"))
            else:
                model = AutoModelForSequenceClassification.from_pretrained(exp)
            tok = AutoTokenizer.from_pretrained(exp)
            model.eval()
            with torch.no_grad():
                logits = torch.cat([model(**tok(list(pred["text"][i:i+32]), truncation=True, max_length=128, padding=True, return_tensors="pt")).logits for i in range(0, len(pred), 32)])
            export_agree = float((logits.argmax(-1).numpy() == pred["predicted"].to_numpy()).mean())
        except Exception as e:
            export_agree = f"load failed: {e!r}"[:200]
    else:
        files = r.stderr.strip().splitlines()[-1:]
    out[run] = {"predict_label_agreement": float(agree), "predict_max_prob_diff": float(diff), "export_label_agreement": export_agree,
                "export_files": files[:8]}
    print(run, out[run], flush=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
