"""The comparison's figures: ``draw_*`` fills a matplotlib Figure (a notebook's), ``plot_*`` writes a PNG.

``plot_*`` draws on a bare Figure with the Agg canvas, so no display is needed and pyplot is left alone.
"""
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .lockstep import QUANTITIES

COLORS = {'none': 'C7', 'scratch': 'C0', 'gluon': 'C1'}
LABELS = {'output': 'network output', 'loss': 'mean loss', 'parameters': 'learned parameters',
          'running_stats': 'running statistics'}


def _png(draw, path, size, *args):
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    draw(fig, *args)
    fig.savefig(path, dpi=100)
    return path


def plot_lockstep(history, path, yardstick=None):
    return _png(draw_lockstep, path, (8, 4.5), history, yardstick)


def plot_runs(histories, path):
    return _png(draw_runs, path, (10, 4), histories)


def plot_speed(rows, path):
    return _png(draw_speed, path, (8, 0.5 * len(rows) + 1.5), rows)


def draw_lockstep(fig, history, yardstick=None, title='bn_gluon.BatchNorm vs gluon.nn.BatchNorm in lockstep'):
    """Max |difference| of each quantity after every step, on a log scale.

    ``yardstick`` (optional, dashed): the same for gluon's float32 network against its float64 copy.
    """
    ax = fig.subplots()
    for i, q in enumerate(QUANTITIES):
        for h, style, who in ((history, '-', 'scratch vs gluon'), (yardstick, ':', 'gluon float32 vs float64')):
            if h is not None:
                steps = range(1, len(h[q]) + 1)
                ax.plot(steps, [max(d, 1e-12) for d in h[q]], style, color=f'C{i}',   # exact 0 has no log
                        label=f'{LABELS[q]}, {who}')
    ax.set_yscale('log')
    ax.set_xlabel('training step')
    ax.set_ylabel('max |difference|')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8, ncol=2 if yardstick is not None else 1)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_runs(fig, histories, title='LeNet on Fashion-MNIST: no BN, scratch BN, gluon BN'):
    """Loss and accuracy per epoch, train solid and test dashed, one colour per normalization."""
    loss_ax, acc_ax = fig.subplots(1, 2)
    for norm, history in histories.items():
        epochs = [m['epoch'] for m in history]
        for ax, key in ((loss_ax, 'loss'), (acc_ax, 'acc')):
            ax.plot(epochs, [m[f'train_{key}'] for m in history], 'o-', color=COLORS.get(norm),
                    label=f'{norm} train', alpha=0.8)
            ax.plot(epochs, [m[f'test_{key}'] for m in history], 's--', color=COLORS.get(norm),
                    label=f'{norm} test', alpha=0.8)
    for ax, label in ((loss_ax, 'cross-entropy loss'), (acc_ax, 'accuracy')):
        ax.set_xlabel('epoch')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_speed(fig, rows, title='Speed relative to gluon.nn.BatchNorm (1 = as fast)'):
    """Horizontal bars: the scratch layer's speed relative to gluon's, per case and mode."""
    ax = fig.subplots()
    labels = [f"{r['case']}, {r['mode']}" for r in rows][::-1]
    values = [r['speed']['scratch'] for r in rows][::-1]
    bars = ax.barh(range(len(rows)), values, color=COLORS['scratch'], label='bn_gluon.BatchNorm')
    ax.bar_label(bars, fmt='%.2fx', padding=3)
    ax.axvline(1.0, color=COLORS['gluon'], ls='--', label='gluon.nn.BatchNorm')
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel('speed relative to gluon.nn.BatchNorm (median of per-round ratios)')
    ax.set_xlim(0, max(values + [1.0]) * 1.25)
    ax.legend(loc='lower right')
    fig.suptitle(title)
    fig.tight_layout()
    return fig
