"""The download gate in three parts: the rule (`rule.decide`, pure), the loader of its facts (`loader`, the only
place that caches them) and the recorder of downloads (`recorder`). access.downloads composes them for every
channel."""
