import torch

from prunekit.data.transforms import center_crop, normalize, random_crop, random_hflip, to_float


def test_to_float_and_normalize():
    raw = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    x = to_float(raw)
    torch.testing.assert_close(x, torch.tensor([[[[0.0, 1.0]]]]))
    torch.testing.assert_close(normalize(x, (0.5,), (0.5,)), torch.tensor([[[[-1.0, 1.0]]]]))


def test_random_crop_windows_and_padding():
    images = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = random_crop(images, 4, padding=2, generator=generator)
        assert out.shape == images.shape
        for original, crop in zip(images, out, strict=True):
            padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
            windows = [padded[:, t : t + 4, s : s + 4] for t in range(5) for s in range(5)]
            assert any(torch.equal(crop, w) for w in windows)
    assert torch.equal(random_crop(images, 4, padding=0), images)


def test_flip_and_center_crop():
    images = torch.arange(8, dtype=torch.float32).reshape(2, 1, 2, 2)
    generator = torch.Generator().manual_seed(0)
    flipped = random_hflip(images, p=1.0, generator=generator)
    assert torch.equal(flipped, images.flip(-1))
    assert torch.equal(random_hflip(images, p=0.0), images)
    grid = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert torch.equal(center_crop(grid, 3), grid[..., 1:4, 1:4])
