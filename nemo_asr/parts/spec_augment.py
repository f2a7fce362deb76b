"""SpecAugment (frequency/time masks) and Cutout (rectangles), vectorised.

All masks of a batch are drawn as small (B, n) tensors and expanded with
broadcast comparisons, so there is no per-example Python loop.
"""
import torch


def _bands(generator, batch, count, max_width, size, device):
    """(B, count) starts and widths of bands of width in [0, max_width] inside ``size``."""
    widths = torch.randint(0, max_width + 1, (batch, count), generator=generator)
    widths = torch.minimum(widths, torch.tensor(size))
    starts = (torch.rand((batch, count), generator=generator) * (size - widths + 1)).long()
    return starts.to(device), widths.to(device)


def _band_mask(starts, widths, size):
    """(B, size) bool: inside any of the bands."""
    positions = torch.arange(size, device=starts.device)[None, None, :]
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
    return inside.any(dim=1)


class SpecAugment(torch.nn.Module):
    def __init__(self, freq_masks=0, time_masks=0, freq_width=10, time_width=10, rect_masks=0,
                 rect_time=5, rect_freq=20, seed=None, mask_value=0.0):
        super().__init__()
        self.freq_masks, self.time_masks = int(freq_masks), int(time_masks)
        self.freq_width, self.time_width = int(freq_width), int(time_width)
        self.rect_masks, self.rect_time, self.rect_freq = int(rect_masks), int(rect_time), int(rect_freq)
        self.mask_value = mask_value
        self.generator = torch.Generator()
        if seed is None:  # follow the global RNG, so a seeded run stays repeatable
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.generator.manual_seed(int(seed))

    def forward(self, x):
        if not self.training:
            return x
        batch, features, frames = x.shape
        mask = torch.zeros((batch, features, frames), dtype=torch.bool, device=x.device)
        if self.freq_masks:
            starts, widths = _bands(self.generator, batch, self.freq_masks, self.freq_width, features, x.device)
            mask |= _band_mask(starts, widths, features)[:, :, None]
        if self.time_masks:
            starts, widths = _bands(self.generator, batch, self.time_masks, self.time_width, frames, x.device)
            mask |= _band_mask(starts, widths, frames)[:, None, :]
        if self.rect_masks:
            f_starts, f_widths = _bands(self.generator, batch, self.rect_masks, self.rect_freq, features, x.device)
            t_starts, t_widths = _bands(self.generator, batch, self.rect_masks, self.rect_time, frames, x.device)
            f_pos = torch.arange(features, device=x.device)[None, None, :, None]
            t_pos = torch.arange(frames, device=x.device)[None, None, None, :]
            in_f = (f_pos >= f_starts[..., None, None]) & (f_pos < (f_starts + f_widths)[..., None, None])
            in_t = (t_pos >= t_starts[..., None, None]) & (t_pos < (t_starts + t_widths)[..., None, None])
            mask |= (in_f & in_t).any(dim=1)
        return x.masked_fill(mask, self.mask_value)


def crop_or_pad_offsets(lengths, frames, generator=None):
    """(B,) start frame of each window of ``frames`` frames: random inside the valid frames of
    utterances at least that long (centred when ``generator`` is None), negative (centring
    with zeros either side) for shorter ones."""
    lengths = lengths.long().cpu()
    spare = lengths - frames
    if generator is None:
        starts = spare.clamp(min=0) // 2
    else:
        starts = (torch.rand(lengths.shape, generator=generator) * (spare.clamp(min=0) + 1)).long()
        starts = torch.minimum(starts, spare.clamp(min=0))
    return torch.where(spare >= 0, starts, -((-spare) // 2))  # padding: the odd frame goes to the right


def crop_or_pad(x, lengths, frames, starts):
    """``x`` (B, D, T) cut to ``frames`` frames per utterance from ``starts`` (see
    ``crop_or_pad_offsets``); only each utterance's valid frames (``lengths``) are kept, every
    other output frame is zero. Returns (B, D, frames)."""
    batch, features, time = x.shape
    starts, lengths = starts.to(x.device), lengths.to(x.device).long()
    index = starts[:, None] + torch.arange(frames, device=x.device)[None, :]  # (B, frames)
    valid = (index >= 0) & (index < lengths[:, None]) & (index < time)
    gathered = torch.gather(x, 2, index.clamp(0, max(time - 1, 0))[:, None, :].expand(batch, features, frames))
    return gathered.masked_fill(~valid[:, None, :], 0.0)
