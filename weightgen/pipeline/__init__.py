"""`weightgen pipeline CONFIG`: every stage from prompts to the trained generator, from one TOML file, resumable.

    pipe = Pipeline.from_file("configs/default.toml")   # weightgen.pipeline.runner
    pipe.inspect()                                      # per stage: done / partial / todo / changed / off
    pipe.run()                                          # runs what is not done, skips what is

Modules, one job each (this file imports none of them, so importing the config stays torch-free):
  config     PipelineConfig: one validated dataclass per stage, read from TOML (tomllib) and written back (tomli-w)
  records    work/pipeline_state.json: what each stage was built from, digests, the diff naming what changed
  workspace  the config bound to its folders, and what stages share: text encoders, work/pairs, the console
  stages     one class per stage (inputs, output, recorded sections, status, run) and REGISTRY, in pipeline order
  runner     Pipeline: walks the registry, skipping the done, resuming the partial, refusing the changed
"""
