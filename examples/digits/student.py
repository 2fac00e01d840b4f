"""The digits student: the teacher's layout at half its width (about a quarter of its parameters)."""
from torch import nn


class DigitsStudent(nn.Module):
    input_specs = ("image:Nx1x32x32:float32:0..1",)
    output_names = ("logits",)

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU())
        self.head = nn.Linear(4 * width, classes)

    def forward(self, image):
        return self.head(self.features(image).mean(dim=(2, 3)))


def build(width: int = 8) -> DigitsStudent:
    return DigitsStudent(width=int(width))
