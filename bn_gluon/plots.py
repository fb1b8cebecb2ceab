"""Every figure of the package: ``draw_*`` fills a matplotlib Figure (a notebook's), ``plot_*`` writes a PNG.

``plot_*`` draws on a bare Figure with the Agg canvas, so no display is needed and pyplot's state is
left alone. The same panels serve a training run (``curves.png``) and the comparison's report.
"""
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = {'none': 'C7', 'scratch': 'C0', 'gluon': 'C1'}
# What twin training records after every step (bn_gluon.compare.twin_training.QUANTITIES), in words.
LABELS = {'output': 'network output', 'loss': 'mean loss', 'parameters': 'learned parameters',
          'running_stats': 'running statistics'}


def _png(draw, path, size, *args):
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    draw(fig, *args)
    fig.savefig(path, dpi=100)
    return path


def plot_curves(histories, path, title=None):
    """Write :func:`draw_curves` of one run's history (a list) or several (a dict name -> history) to ``path``."""
    return _png(draw_curves, path, (9, 3.6) if isinstance(histories, list) else (10, 4), histories, title)


def plot_twin_training(history, path, yardstick=None):
    return _png(draw_twin_training, path, (8, 4.5), history, yardstick)


def plot_float64_distances(results, path):
    return _png(draw_float64_distances, path, (5 * len(results), 4.6), results)


def plot_speed(rows, path):
    return _png(draw_speed, path, (8, 0.5 * len(rows) + 1.5), rows)


def draw_curves(fig, histories, title=None):
    """Loss and accuracy per epoch, train solid and test dashed; the best test accuracy marked.

    ``histories``: one run's history (``fit``'s list of dicts) or a dict name -> history, one colour per
    name (a normalization: 'scratch', 'gluon', ...).
    """
    runs = {'': histories} if isinstance(histories, list) else histories
    if not runs or not all(runs.values()):
        raise ValueError('a history is empty: there is no epoch to plot.')
    loss_ax, acc_ax = fig.subplots(1, 2)
    for name, history in runs.items():
        epochs, prefix = [m['epoch'] for m in history], f'{name} ' if name else ''
        for ax, key in ((loss_ax, 'loss'), (acc_ax, 'acc')):
            ax.plot(epochs, [m[f'train_{key}'] for m in history], 'o-', color=COLORS.get(name),
                    label=f'{prefix}train', alpha=0.8)
            ax.plot(epochs, [m[f'test_{key}'] for m in history], 's--', color=COLORS.get(name),
                    label=f'{prefix}test', alpha=0.8)
        best = max(history, key=lambda m: m['test_acc'])
        acc_ax.annotate(f"{best['test_acc']:.4f}", (best['epoch'], best['test_acc']), textcoords='offset points',
                        xytext=(0, -14), ha='center', color=COLORS.get(name))
    for ax, label in ((loss_ax, 'cross-entropy loss'), (acc_ax, 'accuracy')):
        ax.set_xlabel('epoch')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_twin_training(fig, history, yardstick=None,
                       title='bn_gluon.BatchNorm vs gluon.nn.BatchNorm, trained side by side'):
    """Max |difference| of each quantity after every step of twin training, on a log scale.

    ``yardstick`` (optional, dotted): the same for gluon's float32 network against its float64 copy.
    """
    ax = fig.subplots()
    for i, q in enumerate(LABELS):
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


def draw_float64_distances(fig, results, title="Distance to the float64 network after SGD, per seed"):
    """For each network, one point per seed: gluon's float32 distance (x) against the scratch one's (y).

    ``results``: name -> :func:`bn_gluon.compare.twins.distances_to_float64`; the last step counts.
    Below the diagonal the scratch network is closer to the float64 answer than gluon's float32 one.
    """
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, (name, r) in zip(axes, results.items()):
        x, y = ([max(d[-1], 1e-9) for d in r[k]] for k in ('gluon', 'scratch'))
        ax.loglog(x, y, 'o', color=COLORS['scratch'], label='one seed')
        low, high = min(x + y) / 3, max(x + y) * 3
        ax.plot([low, high], [low, high], '--', color=COLORS['gluon'], label='as far as gluon float32')
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xlabel('gluon.nn.BatchNorm float32: max |param - float64|')
        ax.set_ylabel('bn_gluon.BatchNorm float32: max |param - float64|')
        ax.set_title(f"{name}, after {len(r['scratch'][0])} steps", fontsize=10)
        ax.grid(alpha=0.3, which='both')
    fig.legend(*axes[0].get_legend_handles_labels(), loc='lower center', ncol=2, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))                  # the legend below the panels
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
