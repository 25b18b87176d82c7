from django.contrib import admin
from django.urls import path

from .urls import urlpatterns as project_urls

urlpatterns = [*project_urls, path("admin/", admin.site.urls)]
