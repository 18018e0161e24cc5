"""Walk-forward folds as dynamic partitions: a fold is added when its test window has closed."""

import dagster as dg

FOLDS = dg.DynamicPartitionsDefinition(name="walkforward_folds")
