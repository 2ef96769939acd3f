"""The API's endpoints, one APIRouter per module; proxy/app.py includes them."""
