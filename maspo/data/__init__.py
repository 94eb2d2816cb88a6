"""Prompt sources: built-in generated tasks and user files, all yielding `Example`s.

- `get_task(name, **settings)`, `train_stream`, `heldout_set`: generated tasks
  ("arithmetic", "countdown") with disjoint, seed-determined train and test splits.
- `load_examples(path, fields)`: JSONL, JSON, Parquet or a `save_to_disk` folder.
- `render_prompt(tokenizer, prompt, ...)`: chat template or plain text.
"""

from maspo.data.arithmetic import ArithmeticTask
from maspo.data.chat import render_prompt
from maspo.data.countdown import CountdownTask
from maspo.data.example import Example, Message, Prompt
from maspo.data.files import load_examples
from maspo.data.tasks import TASKS, Task, get_task, heldout_set, train_stream

__all__ = [
    "TASKS",
    "ArithmeticTask",
    "CountdownTask",
    "Example",
    "Message",
    "Prompt",
    "Task",
    "get_task",
    "heldout_set",
    "load_examples",
    "render_prompt",
    "train_stream",
]
