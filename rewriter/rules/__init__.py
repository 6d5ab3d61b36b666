"""The privacy path, one small rule per module, run in order by `rewriter.pipeline`."""
