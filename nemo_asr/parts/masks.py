"""The padding mask shared by every length-aware step (features, convolutions, losses, decoding)."""
import torch


def lengths_mask(lengths, max_len):
    """(B, max_len) bool: True on padding, i.e. at positions >= each row's length."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
