"""The write path: from the spool into ClickHouse.

The receivers acknowledge a request once it is in the spool; from there the writer takes over:

    receivers -> spool -> reader -> pool -> inserter -> checkpoint -> reconciler

- `reader`: takes records from the spool in chunks, commits the checkpoint once they are stored,
  and dead-letters a record that can never be stored (fsynced before the checkpoint passes it);
- `pool`: flattens chunks into insertable batches, in worker processes (staged as Arrow files
  with the embedded database) or on the writer's thread;
- `inserter`: inserts batches into ClickHouse, and tells a failure about the data from one that a
  retry may cure (`transient`, `backoff`);
- `summaries`: reconciles the traces written (billing, summaries, outcomes), on a thread of its
  own; `reconcile` is the one call into the reconciler;
- `pipeline`: the `Writer`, which runs them in turn, isolates a record ClickHouse refuses by
  halving its batch, and reports its health; `WriterConfig` is how it batches and paces.

`load` writes requests straight to ClickHouse without the spool, for seeding a database.
"""

from tokentrail.collector.writer.inserter import insert, load
from tokentrail.collector.writer.pipeline import Writer, WriterConfig

__all__ = ["Writer", "WriterConfig", "insert", "load"]
