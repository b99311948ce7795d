"""The job's output lines, in one place: through absl logging, and the chunks' progress.

    say(message)                  one line of the job (process 0 only), at INFO
    plain_lines(); use_log_dir()  `hydra_jax.main`: before and after flag parsing
    Progress(...).line(...)       a chunk's progress line: the first chunk of a run
                                  includes compiling, so it says so and gives no ETA;
                                  rates and the time left come from the later chunks

Where the lines go (absl's flags, set up by `hydra_jax.main`): on stderr, INFO lines
plain (no absl prefix: --showprefixforinfo=False by default) and warnings with it;
--verbosity=-1 or --stderrthreshold=warning silences the INFO lines on the terminal;
--log_dir=DIR also writes every line, prefixed, to DIR/hydra_jax.main.*.INFO.*;
--logtostderr sends everything to stderr and no file. Used as a library (no absl app,
e.g. a notebook calling `job.run.run`), the lines are printed to stdout as they come.
"""

from __future__ import annotations

import logging as python_logging
import os
import time
from typing import Callable, Optional

from absl import flags
from absl import logging

PROGRAM = "hydra_jax.main"       # the log file's name: DIR/PROGRAM.<host>.<user>.log.INFO.*
# A line's file:line in absl's prefix is the caller of `say`, not this module.
logging.ABSLLogger.register_frame_to_skip(__file__, "say")


def _absl_active() -> bool:
  """Whether absl's handler carries the log records (an absl app parsed its flags)."""
  return (flags.FLAGS.is_parsed()
          and logging.get_absl_handler() in python_logging.getLogger().handlers)


def say(message: str) -> None:
  """One output line of the job, from process 0 only."""
  import jax   # here: main imports this module before flag parsing (--help without jax)
  if jax.process_index() != 0:
    return
  if _absl_active():
    logging.info(message)
    logging.flush()
  else:
    print(message, flush=True)


def plain_lines() -> None:
  """Before flag parsing: INFO lines on the terminal without absl's prefix, and every
  line at or above --stderrthreshold (default info) on it; the flags override both."""
  flags.FLAGS.set_default("showprefixforinfo", False)
  flags.FLAGS.set_default("stderrthreshold", "info")


def use_log_dir() -> None:
  """After flag parsing: lines go to a file under --log_dir (with absl's prefix), else to
  none, and on the terminal those at or above --stderrthreshold; --logtostderr: all of
  them to stderr only (absl's own rule)."""
  handler = logging.get_absl_handler().python_handler
  if flags.FLAGS.logtostderr:
    return
  if flags.FLAGS.log_dir:
    os.makedirs(flags.FLAGS.log_dir, exist_ok=True)
    handler.use_absl_log_file(program_name=PROGRAM, log_dir=flags.FLAGS.log_dir)
  else:   # no file: the stream is a sink, so that --stderrthreshold decides what is shown
    handler.stream = open(os.devnull, "w")


# Progress ----------------------------------------------------------------------------------


def steady_rate(marks: list[tuple[float, int]]) -> Optional[float]:
  """Prompts per second after the first chunk (which includes compiling). marks: (time,
  prompts swept so far) at the start and at the end of each chunk of this run; None until
  a chunk after the first has finished."""
  if len(marks) < 3:
    return None
  (first_time, first_count), (last_time, last_count) = marks[1], marks[-1]
  return (last_count - first_count) / max(last_time - first_time, 1e-9)


def seconds_left(marks: list[tuple[float, int]], remaining: int) -> Optional[float]:
  """The time the `remaining` prompts take at the steady rate (None: not known yet)."""
  rate = steady_rate(marks)
  return None if rate is None else remaining / max(rate, 1e-12)


class Progress:
  """The progress lines of one run of the chunks: `line(index)` after each chunk."""

  def __init__(self, num_chunks: int, total: int, done_before: int, per_prompt: int,
               clock: Callable[[], float] = time.time):
    self.num_chunks, self.total, self.per_prompt, self.clock = num_chunks, total, per_prompt, clock
    self.done_before = done_before
    self.marks = [(clock(), 0)]      # (time, prompts swept in this run)

  def line(self, index: int, swept: int) -> str:
    """The line after chunk `index` (0-based), `swept` prompts swept in this run so far."""
    self.marks.append((self.clock(), swept))
    head = (f"chunk {index + 1}/{self.num_chunks}: {self.done_before + swept}/{self.total} "
            "prompts done")
    rate = steady_rate(self.marks)
    if rate is None:
      return f"{head} in {self.marks[-1][0] - self.marks[0][0]:,.1f} s (compiling)"
    left = seconds_left(self.marks, self.total - self.done_before - swept)
    return f"{head}, {rate * self.per_prompt:,.0f} ablated forwards/s, {left:,.0f} s left"

  def steady_forwards_per_second(self) -> Optional[float]:
    """Ablated forwards per second after the first chunk (None with one chunk or none)."""
    rate = steady_rate(self.marks)
    return None if rate is None else rate * self.per_prompt

