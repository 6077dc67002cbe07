from django.contrib.auth import views as auth_views
from django.urls import include, path

from tests.support.oidc_idp import control

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
    path("control/clients", control.create_client),
    path("control/users", control.create_user),
    path("control/users/<str:username>/active", control.set_user_active),
    path("control/users/<str:username>/groups", control.set_user_groups),
    path("control/users/<str:username>/claims", control.set_user_claims),
    path("control/keys/rotate", control.rotate_key),
    path("control/faults", control.add_fault),
]
