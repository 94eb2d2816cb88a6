"""The data files maspo reads rows from, by suffix: the one list that the file readers
(``maspo.data.files``), the choice of a hub data set's files (``maspo.data.hub_datasets``)
and the telling of a missing local file from a hub id (``maspo.hub``) all use."""

DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
"""In order of preference: a split published in several formats is read from the first."""
