"""A CondPretrainError raised in a DataLoader worker reaches the user as its message."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from condpretrain.errors import CondPretrainError, UnreadableImageError


class Failing(Dataset):
    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        if index == 2:
            raise self.error("pictures/2.jpg: unreadable image (cut: 12 bytes)")
        return index


@pytest.mark.parametrize("error", [CondPretrainError, UnreadableImageError])
def test_a_workers_error_keeps_its_type_and_only_its_message(error):
    with pytest.raises(error) as info:
        list(DataLoader(Failing(error), batch_size=1, num_workers=1))
    assert str(info.value) == "pictures/2.jpg: unreadable image (cut: 12 bytes)"


def test_other_messages_are_left_alone():
    text = "Caught my eye: nothing to unwrap here"
    assert str(CondPretrainError(text)) == text
    assert CondPretrainError("a", "b").args == ("a", "b")


def test_other_errors_in_workers_keep_their_traceback():
    with pytest.raises(KeyError) as info:
        list(DataLoader(Failing(KeyError), batch_size=1, num_workers=1))
    assert "Original Traceback" in str(info.value)
