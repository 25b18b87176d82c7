from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("counter/", views.counter, name="counter"),
    path("room/<slug:room>/", views.room, name="room"),
    path("room/<slug:room>/socketio/", views.room_socketio, name="room_socketio"),
    path("room/<slug:room>/announce/", views.announce, name="announce"),
]
