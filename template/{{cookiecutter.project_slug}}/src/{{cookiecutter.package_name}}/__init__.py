"""{{ cookiecutter.package_name }}: custom layers that keep the nn.Module contract."""

from .layers import (
    {{ cookiecutter.layer_class }} as {{ cookiecutter.layer_class }},
)
from .model import Model as Model
from .model import ModelConfig as ModelConfig

__version__ = "0.1.0"
