"""Reading SavedModels without TensorFlow: their signatures and writer version (`signatures`),
from the protobuf wire format (`wire`)."""
from .signatures import DTYPES, SavedModelInfo, parse_saved_model, read_saved_model_info

__all__ = ["DTYPES", "SavedModelInfo", "parse_saved_model", "read_saved_model_info"]
