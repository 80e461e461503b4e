{{ cookiecutter.description | tojson }}

from .layers import {{ cookiecutter.layer_class }} as {{ cookiecutter.layer_class }}
from .model import Model as Model
from .model import ModelConfig as ModelConfig

__version__ = "0.1.0"
