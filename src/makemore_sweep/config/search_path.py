"""The user config folder ./configs on Hydra's search path, ahead of the shipped configs.

A Hydra SearchPathPlugin (public plugin API) rather than `hydra.searchpath` in train.yaml:
that key is appended after the shipped configs, and a `hydra.searchpath=[...]` override
replaces it. Here ./configs/experiment/<study>_best.yaml, written by a sweep, is found by
`experiment=<study>_best`, and a file in ./configs replaces a shipped one of the same group and
name. The path is absolute, taken when Hydra builds its search path, so a later change of
working directory does not move it.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

from makemore_sweep.config.locations import CONFIG_SOURCE, user_config_dir

PROVIDER = "makemore-sweep user configs"


class UserConfigSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # Hydra runs every installed search-path plugin for every app: touch only ours.
        if not any(element.path == CONFIG_SOURCE for element in search_path.get_path()):
            return
        if not user_config_dir().is_dir():
            return  # Hydra would warn about a missing search-path folder on every run
        search_path.prepend(
            PROVIDER, f"file://{user_config_dir()}", anchor=SearchPathQuery(path=CONFIG_SOURCE)
        )
