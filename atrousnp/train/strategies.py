"""How a step is run: in one process, replayed as a CUDA graph, or spread over the ranks of an MPI job.

The loop (``loop.py``) is written once; what differs between these lives here, one class each:

    SingleProcess   the batch drawn from the run's Generator; the step run as written
    CudaGraph       the same step captured once as a CUDA graph and replayed (``atrousnp.cuda.graph``)
    DataParallel    each of K ranks computes its 1/K of the global batch; gradients averaged,
                    batch norm synchronised, and only rank 0 writes (``atrousnp.parallel``)
"""

import contextlib

import numpy as np

from .. import cuda, parallel
from ..data import IGNORE_INDEX, keyed_batch, random_batch
from .build import datasets
from .config import SettingsError, check_out
from .evaluation import evaluate
from .outputs import folder_lock


def strategy_for(config):
    if config.distributed:
        return DataParallel()
    if config.backend == "cuda" and config.cuda_graph is not False:
        return CudaGraph()
    return SingleProcess()


class SingleProcess:
    is_main = True  # the process that prints, checkpoints and draws

    def holding(self, out):
        """The ``out`` folder, made and locked for the run (a ``with`` block)."""
        out.mkdir(parents=True, exist_ok=True)
        return folder_lock(out)

    def check_out(self, config):
        """Refuse an ``out`` folder that cannot take this run (``config.check_out``)."""
        check_out(config)

    def datasets(self, config):
        """Both splits, checked file by file before the first iteration."""
        train_set, val_set = datasets(config)
        for dataset in (train_set, val_set):
            dataset.check(config.num_classes, progress=config.progress)
        return train_set, val_set

    def prepare(self, model):
        """Make the model ready for this way of training (nothing, in one process)."""

    def batch(self, train_set, transform, config, rng, iteration):
        """The images and labels of ``iteration``: the next batch drawn from ``rng``."""
        return random_batch(train_set, transform, config.batch_size, rng)

    def scale_loss(self, loss, labels):
        """The loss whose gradients this process takes (the batch's mean, in one process)."""
        return loss

    def wrap(self, step):
        """The training step as this strategy runs it (as written, in one process)."""
        return step

    def average_gradients(self, model):
        """Nothing to average in one process."""

    def loss_value(self, loss):
        """The batch's loss as a number."""
        return loss.item()

    def evaluate(self, model, dataset, config, scales=(1.0,), flip=False, keep=0):
        """The confusion matrix of the whole split, and the first ``keep`` examples."""
        return evaluate(model, dataset, config.num_classes, config.eval_output_stride, scales, flip, keep)


class CudaGraph(SingleProcess):
    """Every batch has one shape, so the step is captured once and replayed: one launch instead
    of hundreds (see ``atrousnp.cuda.graph``)."""

    def wrap(self, step):
        return cuda.graph(step)


class DataParallel(SingleProcess):
    """One rank of an MPI job: K ranks train what one process trains with the whole batch."""

    def __init__(self):
        parallel.init()
        self.is_main = parallel.is_main()

    def holding(self, out):
        """Rank 0 alone writes into ``out``, and holds its lock."""
        return super().holding(out) if self.is_main else contextlib.nullcontext()

    def check_out(self, config):
        """Rank 0 checks the folder it holds; then every rank refuses alike, so that rank 0 alone
        says why (the job's one message) and each rank exits by itself."""
        refusal = None
        if self.is_main:
            try:
                check_out(config)
            except (OSError, ValueError) as error:
                refusal = str(error)
        refusal = parallel.broadcast_object(refusal)
        if refusal is not None:
            raise SettingsError(refusal)

    def datasets(self, config):
        """Checked by rank 0 (which writes the synthetic set, if it is the data) while the others wait."""
        checked = super().datasets(config) if self.is_main else None
        parallel.barrier()
        return checked or datasets(config)

    def prepare(self, model):
        """Synchronised batch norm, and every rank starting from rank 0's weights."""
        parallel.broadcast_parameters(parallel.convert_sync_batch_norm(model))

    def batch(self, train_set, transform, config, rng, iteration):
        """This rank's share of the global batch, drawn from (seed, iteration, position): the same
        images, crops and flips whatever the number of ranks."""
        return keyed_batch(train_set, transform, config.batch_size, config.seed, iteration,
                           parallel.shard(config.batch_size))

    def scale_loss(self, loss, labels):
        """This rank's mean scaled to its share of the global mean (its pixels that are not
        ignored, over all ranks'), so that the averaged gradients are the global batch's."""
        factor = parallel.share_of_mean(int((labels != IGNORE_INDEX).sum()))
        return loss * factor

    def average_gradients(self, model):
        parallel.allreduce_gradients(model.parameters())

    def loss_value(self, loss):
        """The global batch's loss, from this rank's scaled share."""
        return float(parallel.allreduce_sum(np.array([loss.item()]))[0]) / parallel.world_size()

    def evaluate(self, model, dataset, config, scales=(1.0,), flip=False, keep=0):
        """The images dealt out to the ranks (rank r takes r, r + K, ...) and the confusion
        matrices summed: the whole split's matrix on every rank."""
        share = range(parallel.rank(), len(dataset), parallel.world_size())
        cm, examples = evaluate(model, dataset, config.num_classes, config.eval_output_stride, scales, flip, keep,
                                share)
        return parallel.allreduce_sum(cm), examples
