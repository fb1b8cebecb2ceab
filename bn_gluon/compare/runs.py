"""Full training runs of the LeNet with norm 'none', 'scratch' and 'gluon': same seed, data and schedule."""
import dataclasses

from ..engine import fit
from ..experiment import make_net

NORMS = ('none', 'scratch', 'gluon')


def train_norms(config, train_iter, test_iter, ctx=None, norms=NORMS, log=None):
    """Train one LeNet per normalization with ``config``'s hyperparameters; return (histories, nets).

    Every net starts from the same initial weights (``config.seed``) and sees the same batches in the
    same order, so the scratch and gluon runs differ only by float32 rounding.

    Parameters
    ----------
    config : TrainConfig
        epochs, batch size (already in ``train_iter``), lr, schedule, momentum, seed, hybridize, ...
    train_iter, test_iter : bn_gluon.data.DataIter
    norms : sequence of str
        Keys of ``bn_gluon.models.NORMS``.
    log : callable or None
        Gets one line per finished run.
    """
    histories, nets = {}, {}
    for norm in norms:
        run_config = dataclasses.replace(config, norm=norm, style='gluon', quiet=True).validate()
        nets[norm] = make_net(run_config, ctx)
        histories[norm] = fit(nets[norm], train_iter, test_iter, run_config, ctx, log=lambda *a: None)
        if log is not None:
            last = histories[norm][-1]
            log(f"  norm {norm:8s} test acc {last['test_acc']:.4f}  train acc {last['train_acc']:.4f}  "
                f"{last['examples_per_sec']:,.0f} ex/s")
    return histories, nets


def final_table(histories):
    """norm -> the last epoch's metrics, plus the best test accuracy and its epoch."""
    table = {}
    for norm, history in histories.items():
        best = max(history, key=lambda m: m['test_acc'])
        table[norm] = dict(history[-1], best_test_acc=best['test_acc'], best_epoch=best['epoch'])
    return table
