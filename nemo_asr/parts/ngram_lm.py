"""Interpolated modified Kneser-Ney n-gram estimation (Chen & Goodman 1998,
as lmplz does it) for small corpora, written out as an ARPA file.

- Highest order: raw counts. Lower orders: continuation counts (number of
  distinct left extensions), except n-grams starting with ``<s>``, which keep
  raw counts since nothing precedes ``<s>``.
- Per order three discounts from counts-of-counts t1..t4:
  Y = t1 / (t1 + 2 t2),  D_k = k - (k + 1) Y t_{k+1} / t_k  (k = 1, 2, 3+).
  Where a tiny corpus makes these undefined (some t_k = 0, or D_k outside
  (0, k)) -- lmplz stops with BadDiscountException there -- the order falls
  back to D = (0.5, 1.0, 1.5).
- p(w|h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w|h'),
  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / a(h.);
  unigrams interpolate with a uniform distribution over the vocabulary
  (including ``<unk>``, excluding ``<s>``).

The ARPA file stores the interpolated log10 p and log10 gamma as backoff.
"""
import collections
import math

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


class NgramError(ValueError):
    """A language model cannot be estimated from what was given; the message says why."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


def _discounts(adjusted_counts):
    counts_of_counts = collections.Counter(min(c, 4) for c in adjusted_counts.values())
    t = [counts_of_counts.get(k, 0) for k in range(1, 5)]
    if min(t) == 0:
        return FALLBACK_DISCOUNTS
    y = t[0] / (t[0] + 2 * t[1])
    discounts = tuple(k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3))
    if not all(0 < d < k for d, k in zip(discounts, (1, 2, 3))):
        return FALLBACK_DISCOUNTS
    return discounts


class KneserNeyLM:
    """``sentences``: lists of words. ``progress``: a tqdm bar (on stderr, when it is a terminal)
    while n-grams are counted and while the ARPA file is written."""

    def __init__(self, sentences, order=3, progress=False):
        if order < 2:
            raise NgramError(f"n-gram order {order}: must be at least 2 (KenLM cannot load unigram-only models)")
        from tqdm import tqdm

        self.order = order
        self.progress = progress
        raw = [collections.Counter() for _ in range(order + 1)]
        total = len(sentences) if hasattr(sentences, "__len__") else None
        for words in tqdm(sentences, desc="counting n-grams", unit=" sentences", total=total, leave=False,
                          disable=None if progress else True):
            if not words:
                continue
            padded = [BOS] + list(words) + [EOS]
            for n in range(1, order + 1):
                for i in range(len(padded) - n + 1):
                    raw[n][tuple(padded[i:i + n])] += 1
        if not raw[1]:
            raise NgramError("No text to estimate a language model from (every sentence is empty)")
        # adjusted counts
        self.adjusted = [None] * (order + 1)
        self.adjusted[order] = dict(raw[order])
        for n in range(order - 1, 0, -1):
            continuation = collections.Counter(gram[1:] for gram in raw[n + 1])
            self.adjusted[n] = {gram: (count if gram[0] == BOS else continuation[gram])
                                for gram, count in raw[n].items()}
        self.adjusted[1].pop((BOS,), None)
        self.discounts = [None] + [_discounts(self.adjusted[n]) for n in range(1, order + 1)]
        self.vocab = sorted({g[0] for g in self.adjusted[1]} | {UNK})
        self._estimate()

    def _estimate(self):
        order = self.order
        self.prob = [None] + [dict() for _ in range(order)]  # interpolated probabilities
        self.backoff = [None] + [dict() for _ in range(order)]
        for n in range(1, order + 1):
            d1, d2, d3 = self.discounts[n]
            totals, kinds = collections.Counter(), collections.defaultdict(lambda: [0, 0, 0])
            for gram, count in self.adjusted[n].items():
                context = gram[:-1]
                totals[context] += count
                kinds[context][min(count, 3) - 1] += 1
            gammas = {h: (d1 * k[0] + d2 * k[1] + d3 * k[2]) / totals[h] for h, k in kinds.items()}
            for gram, count in self.adjusted[n].items():
                context = gram[:-1]
                discount = (d1, d2, d3)[min(count, 3) - 1]
                lower = 1.0 / len(self.vocab) if n == 1 else self.prob[n - 1][gram[1:]]
                self.prob[n][gram] = (count - discount) / totals[context] + gammas[context] * lower
            if n == 1:
                self.prob[1][(UNK,)] = gammas[()] / len(self.vocab)
                self.unigram_gamma = gammas[()]
            else:
                self.backoff[n - 1].update(gammas)

    def probability(self, word, context=()):
        """P(word | context) by the standard backoff evaluation of the ARPA model."""
        context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        if (word,) not in self.prob[1]:
            word = UNK
        weight = 1.0
        while True:
            gram = context + (word,)
            p = self.prob[len(gram)].get(gram)
            if p is not None:
                return weight * p
            weight *= self.backoff[len(context)].get(context, 1.0)
            context = context[1:]

    def write_arpa(self, path):
        from tqdm import tqdm

        bar = tqdm(total=sum(len(self.prob[n]) for n in range(1, self.order + 1)), desc="writing ARPA",
                   unit=" n-grams", leave=False, disable=None if self.progress else True)
        with bar, open(path, "w", encoding="utf-8") as out:
            out.write("\\data\\\n")
            counts = [len(self.prob[n]) + (1 if n == 1 else 0) for n in range(1, self.order + 1)]
            for n, count in enumerate(counts, 1):
                out.write(f"ngram {n}={count}\n")
            for n in range(1, self.order + 1):
                out.write(f"\n\\{n}-grams:\n")
                entries = dict(self.prob[n])
                if n == 1:
                    entries[(BOS,)] = None
                for gram in sorted(entries):
                    p = entries[gram]
                    logp = -99.0 if p is None else math.log10(p)
                    line = f"{logp:.7f}\t{' '.join(gram)}"
                    if n < self.order and gram in self.backoff[n]:
                        line += f"\t{math.log10(self.backoff[n][gram]):.7f}"
                    out.write(line + "\n")
                bar.update(len(self.prob[n]))
            out.write("\n\\end\\\n")
        return path
