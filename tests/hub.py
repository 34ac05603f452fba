"""Talking to a real JupyterHub the way a browser and JupyterLab do: log in with the
form, spawn the user's server, run code in a kernel of *that* server over the
Jupyter kernel protocol (websocket).  Used by test_jupyterhub.py."""
from __future__ import annotations

import json
import time
import uuid
from typing import Dict, List, Tuple

import requests
import websocket


class HubUser:
    def __init__(self, hub_url: str, name: str):
        self.hub_url, self.name = hub_url.rstrip("/"), name
        self.session = requests.Session()
        self.token = ""

    def login(self, password: str) -> bool:
        """The login form, as a browser posts it; True if the hub let us in."""
        self.session.get(f"{self.hub_url}/hub/login", timeout=30)
        xsrf = self.session.cookies.get("_xsrf", "")
        response = self.session.post(
            f"{self.hub_url}/hub/login?next=", timeout=60, allow_redirects=False,
            data={"username": self.name, "password": password, "_xsrf": xsrf})
        return response.status_code == 302 and "login" not in response.headers.get(
            "location", "/hub/login")

    def create_token(self) -> str:
        """An API token of this user (what JupyterLab uses), from the logged-in session."""
        xsrf = self.session.cookies.get("_xsrf", "")
        response = self.session.post(
            f"{self.hub_url}/hub/api/users/{self.name}/tokens", timeout=30,
            headers={"X-XSRFToken": xsrf, "Referer": f"{self.hub_url}/hub/token"},
            json={"note": "mlplatform test", "expires_in": 3600})
        response.raise_for_status()
        self.token = response.json()["token"]
        return self.token

    @property
    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def spawn(self, limit: float = 180.0) -> str:
        """Start the user's server through the hub; its URL once it answers."""
        response = requests.post(f"{self.hub_url}/hub/api/users/{self.name}/server",
                                 headers=self.headers, timeout=60)
        assert response.status_code in (201, 202), (response.status_code, response.text)
        deadline = time.monotonic() + limit  # a bound for a hung spawn, not a measurement
        while True:
            user = requests.get(f"{self.hub_url}/hub/api/users/{self.name}",
                                headers=self.headers, timeout=30).json()
            server = user.get("servers", {}).get("", {})
            if server.get("ready"):
                return self.hub_url + server["url"].rstrip("/")
            assert time.monotonic() < deadline, f"the server of {self.name} never got ready"
            time.sleep(1)

    def stop_server(self) -> None:
        requests.delete(f"{self.hub_url}/hub/api/users/{self.name}/server",
                        headers=self.headers, timeout=120)


def run_in_kernel(server_url: str, token: str, code: str,
                  limit: float = 600.0) -> Tuple[str, List[str]]:
    """Start a kernel on the server, run ``code``, return (status, stdout + error lines)."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{server_url}/api/kernels", headers=headers,
                           json={"name": "python3"}, timeout=60)
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    ws_url = server_url.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
    socket = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"],
                                         timeout=limit)
    try:
        msg_id = uuid.uuid4().hex
        socket.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        lines: List[str] = []
        while True:
            message = json.loads(socket.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                lines.extend(content["text"].splitlines())
            elif kind == "error":
                lines.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "execute_reply":
                return content["status"], lines
    finally:
        socket.close()
        requests.delete(f"{server_url}/api/kernels/{kernel_id}", headers=headers, timeout=60)
