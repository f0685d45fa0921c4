"""Method embed_lr: the frozen encoder's pooled embeddings (tasks/embeddings.py: the model's own pooling, else the
mean over non-padding tokens), then scikit-learn's logistic regression, its C chosen on validation from a log grid
(embeddings.C_GRID; the grid and the chosen C are in metrics.json under `logistic_regression`). Nothing but the
head is fitted, so it takes seconds on a CPU and, given the data, gives the same result every time."""
from __future__ import annotations

from tasks import embeddings
from tasks.base import RunContext, TaskResult


def run(run, context: RunContext) -> TaskResult:
    embedder, tokenizer = embeddings.load_embedder(run.model, context.config.trust_remote_code)
    head, fields = embeddings.fit_and_score(context, embeddings.embedding_function(embedder, tokenizer, context))
    embeddings.save(context.run_dir / "model", run.method, run.model, embedder, head,
                    {"logistic_regression": fields["extra"]["logistic_regression"]})
    trainable, total = embeddings.count(embedder, len(context.splits.class_names))
    return TaskResult(precision="bf16" if context.bf16 else "fp32", trainable_parameters=trainable,
                      total_parameters=total, **fields)
