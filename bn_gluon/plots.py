"""Loss and accuracy curves of a run, drawn headless (Agg) into a PNG."""
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_curves(history, path, title=None):
    """Draw train/test loss and accuracy per epoch from ``history`` (fit's list of dicts) into ``path``.

    Uses a bare Figure with the Agg canvas, so no display is needed and pyplot's state is left alone.
    """
    if not history:
        raise ValueError('history is empty: there is no epoch to plot.')
    epochs = [m['epoch'] for m in history]
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label in ((loss_ax, 'loss', 'cross-entropy loss'), (acc_ax, 'acc', 'accuracy')):
        ax.plot(epochs, [m[f'train_{key}'] for m in history], 'o-', label='train')
        ax.plot(epochs, [m[f'test_{key}'] for m in history], 's--', label='test')
        ax.set_xlabel('epoch')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    best = max(history, key=lambda m: m['test_acc'])
    acc_ax.annotate(f"{best['test_acc']:.4f}", (best['epoch'], best['test_acc']), textcoords='offset points',
                    xytext=(0, -14), ha='center')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
