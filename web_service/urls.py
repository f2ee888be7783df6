from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from web_service import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/ws-ticket", api.ws_ticket, name="ws-ticket"),
    path("api/whoami", api.whoami, name="whoami"),
    path("api/topics/<str:topic>/messages", api.publish, name="topic-messages"),
    path("api/users/<int:user_id>/notify", api.notify, name="notify-user"),
]
