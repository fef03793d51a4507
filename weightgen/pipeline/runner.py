"""`weightgen pipeline CONFIG`: every stage from prompts to the trained generator, in one resumable command.

    pipe = Pipeline.from_file("configs/default.toml")
    pipe.inspect()                 # [StageStatus]: done / partial / todo / changed / off, per stage
    pipe.run()                     # runs what is not done, skips what is

The stages and what each calls are in weightgen.pipeline.stages; the runner walks their registry.
Every output lives in the config's `work` folder: work/pairs, work/base, work/zoo, work/chunks,
work/generator-run (the generator is work/generator-run/generator), work/prompts.json when built.
Relative paths in a config file resolve against the file's folder.

Resume. A stage is done when its own output says so: the base's weightgen.json, the zoo manifest's
"complete", the chunks file, the generator's training step reaching `steps`. A done stage is
skipped; an unfinished one resumes (pairs, zoo and generator resume inside their stage). Before a
stage runs, what it depends on is recorded in work/pipeline_state.json (weightgen.pipeline.records).
When that record no longer matches, the stage is "changed" and the pipeline refuses to skip or
resume it, naming the key, unless --overwrite-changed rebuilds it (and, by the same check, every
stage after it). Settings that do not change a stage's result are not recorded, so raising
`[generator] steps` simply trains on. Ship is a copy: it reruns whenever what it would copy
differs from the target.

Processes. The pipeline runs in one process. The zoo, by far the longest stage, shards over the
ranks of a launcher (each rank trains every N-th concept; see weightgen.zoo.ranks):
    weightgen pipeline CONFIG --stages prompts,base
    accelerate launch --multi_gpu --num_processes N -m weightgen pipeline CONFIG --stages zoo
    weightgen pipeline CONFIG
Under a launcher (WORLD_SIZE > 1) only `--stages zoo` runs; set `[zoo.train] cpu = true` for CPU ranks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from weightgen.errors import WeightgenError
from weightgen.pipeline.config import PipelineConfig, load_config
from weightgen.pipeline.records import log_event
from weightgen.pipeline.stages import PRODUCT, STAGES, Stage, StageStatus, bind
from weightgen.pipeline.workspace import Workspace
from weightgen.zoo.ranks import Ranks


class Pipeline(Workspace):
    """A PipelineConfig bound to its folders, with every stage bound to it; inspect() and run()."""

    def __init__(self, config: PipelineConfig, root: str | Path = ".", source: str = "", encoders: dict | None = None):
        super().__init__(config, root, source, encoders)
        self.steps: dict[str, Stage] = bind(self)
        self.main = True  # this process writes the state file and log (False on a launcher's other ranks)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> Pipeline:
        return cls(load_config(path), Path(path).parent, source=str(path), **kwargs)

    def output(self, stage: str) -> Path:
        return self.steps[stage].output()

    def stages(self, names: str | Sequence[str] | None = None) -> list[str]:
        """The stages to run, in pipeline order: all that can run (ship when it has a target), or the named ones."""
        if names is None:
            return [name for name, step in self.steps.items() if not step.blocker()]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.steps]
        if unknown or not names:
            raise WeightgenError(f"unknown stage(s) {unknown or names!r}; choose from {', '.join(STAGES)}")
        for name in names:
            if self.steps[name].blocker():
                raise WeightgenError(self.steps[name].blocker())
        return [name for name in STAGES if name in names]

    def inspect(self, adopt: bool = False) -> list[StageStatus]:
        """Every stage's status, in order (what --dry-run prints)."""
        recorded = self.state.records()
        statuses: dict[str, StageStatus] = {}
        for name, step in self.steps.items():
            statuses[name] = step.status(statuses, recorded, adopt)
        return list(statuses.values())

    def run(self, stages: str | Sequence[str] | None = None, overwrite_changed: bool = False, adopt: bool = False,
            progress: bool = True) -> list[StageStatus]:
        """Run the selected stages in order: skip the done, resume the partial, refuse the changed
        (unless `overwrite_changed`: remove and rebuild). Returns the final statuses."""
        selected = self.stages(stages)
        ranks = Ranks.from_env()
        self.main = ranks.is_main
        if ranks.world > 1:
            if not all(self.steps[name].sharded for name in selected) or overwrite_changed or adopt:
                raise WeightgenError(
                    f"under a launcher (WORLD_SIZE={ranks.world}) the pipeline runs only the zoo stage, sharded: "
                    "`accelerate launch ... -m weightgen pipeline CONFIG --stages zoo` (without --overwrite-changed "
                    "or --adopt); run the other stages in one process")
            self.console.quiet = not self.main
        first = {s.stage: s for s in self.inspect(adopt)}
        for name in selected:  # refuse before hours of work, not after
            if first[name].state == "changed" and not overwrite_changed:
                raise self._changed_error(first[name])
        t_all = time.perf_counter()
        for i, name in enumerate(selected, 1):
            head = f"[bold]{i}/{len(selected)} {name}[/bold]"
            self._run_stage(self.steps[name], head, overwrite_changed, adopt, progress)
        final = {s.stage: s for s in self.inspect()}
        made = f"; {PRODUCT} {self.show(self.steps[PRODUCT].product())}" if final[PRODUCT].state == "done" else ""
        took = format_seconds(time.perf_counter() - t_all)
        self.console.print(escape(f"pipeline: {', '.join(selected)} in {took}{made}"))
        return list(final.values())

    def _run_stage(self, step: Stage, head: str, overwrite_changed: bool, adopt: bool, progress: bool) -> None:
        """One stage: checked against its inputs and its record, then skipped, rebuilt or resumed."""
        status = {s.stage: s for s in self.inspect(adopt)}
        st = status[step.name]
        for up in step.inputs:
            if status[up].state != "done":
                raise WeightgenError(f"stage {step.name} needs {up}, which is {status[up].state}"
                                     f"{': ' + status[up].detail if status[up].detail else ''}; "
                                     f"add {up} to --stages")
        if st.state == "done":
            if st.adopt and self.main:
                self.state.start(step.name, step.record())
            self.console.print(f"{head}: [green]done[/green], skipped "
                               + escape(f"({self.show(st.output)}{': ' + st.detail if st.detail else ''})"))
            self._log(step.name, "skip", state="done")
            return
        if st.state == "changed":
            if not overwrite_changed:
                raise self._changed_error(st)
            self.console.print(f"{head}: [yellow]changed[/yellow] "
                               + escape(f"({st.detail}): removing {self.show(st.output)}"))
            if self.main:
                _remove(st.output)
        if self.main:
            self.state.start(step.name, step.record())
        self.console.rule(f"{head}: {st.state} -> " + escape(self.show(st.output)), align="left")
        self._log(step.name, "start", state=st.state)
        t0 = time.perf_counter()
        try:
            step.run(progress=progress, overwrite=overwrite_changed)
        except BaseException as e:
            seconds = time.perf_counter() - t0
            self._log(step.name, "fail", seconds=round(seconds, 2), error=f"{type(e).__name__}: {e}")
            self.console.print(f"[red]{step.name} stopped after {format_seconds(seconds)}[/red]; rerun to resume")
            raise
        seconds = time.perf_counter() - t0
        self._log(step.name, "finish", seconds=round(seconds, 2))
        if self.main:
            self.state.finish(step.name, step.record(), seconds)
        self.console.print(f"{head}: [green]finished[/green] in {format_seconds(seconds)}")

    def _changed_error(self, st: StageStatus) -> WeightgenError:
        return WeightgenError(f"stage {st.stage} was built with another config: {st.detail}; restore the config, "
                              f"or pass --overwrite-changed to rebuild {st.stage} and the stages after it")

    def _log(self, stage: str, event: str, **fields: Any) -> None:
        if self.main:
            log_event(self.work, stage, event, **fields)


def _remove(path: Path | None) -> None:
    if path is not None and path.is_dir():
        shutil.rmtree(path)
    elif path is not None and path.exists():
        path.unlink()


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m {s:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m {s:02d}s"


def format_plan(pipeline: Pipeline, statuses: Sequence[StageStatus]) -> str:
    """The --dry-run table: stage, status, output path, detail."""
    rows = [("stage", "status", "output", "detail")]
    rows += [(s.stage, s.state, pipeline.show(s.output), s.detail) for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]}".rstrip() for r in rows)
