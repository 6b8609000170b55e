"""Registers the schema with Hydra's ConfigStore, so that conf/ merges into typed nodes.

conf/train.yaml starts its defaults list with `makemore_schema` (RunConfig): every group file
then merges into a typed node and carries only what differs from the schema. The task options
are typed per option (`task/train_schema`, `task/lr_find_schema`), named in conf/task/*.yaml.
Importing this module registers them; it is imported by the CLI and by the Hydra plugin package,
so any composition of conf/train.yaml (the compose API in tests too) sees the schema.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from makemore_sweep.config.schema import LrFindTask, RunConfig, TrainTask

SCHEMA_NAME = "makemore_schema"


def register_schema() -> None:
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=RunConfig)
    store.store(group="task", name="train_schema", node=TrainTask)
    store.store(group="task", name="lr_find_schema", node=LrFindTask)


register_schema()
