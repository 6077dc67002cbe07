// Tongdao web console: one vanilla ES module, no dependencies, no build step.
//
// Safety rules kept throughout this file:
//  * API data only ever reaches the page through textContent / attributes set on elements
//    built with document.createElement: never innerHTML, insertAdjacentHTML or document.write.
//  * The session token lives in sessionStorage only (gone when the tab closes), and is sent
//    only to this origin's /api/v1 as a Bearer header.

const API = "/api/v1";
const TOKEN_KEY = "tongdao.session";

const ROLE_LABELS = {
  operator_admin: "Operator admin · 运营管理员",
  compliance_officer: "Compliance officer · 合规专员",
  billing_clerk: "Billing clerk · 计费专员",
  auditor: "Auditor · 审计员",
  tenant_admin: "Tenant admin · 租户管理员",
  employee: "Employee · 员工",
};

const OPERATOR = ["operator_admin", "compliance_officer", "billing_clerk", "auditor"];

// What the navigation offers to whom. The API enforces the same rules; this only avoids
// offering pages that would answer 403.
const VIEWS = [
  { id: "tenants", label: "Tenants · 租户", roles: OPERATOR },
  { id: "pops", label: "PoPs · 接入点", roles: OPERATOR },
  { id: "licences", label: "Licences · 许可证", roles: OPERATOR },
  { id: "devices", label: "Devices · 设备", roles: ["tenant_admin", "employee"] },
  { id: "users", label: "Users · 用户", roles: ["tenant_admin"] },
  {
    id: "audit",
    label: "Audit · 审计日志",
    roles: ["operator_admin", "compliance_officer", "auditor", "tenant_admin"],
  },
];
const CAN_CREATE_TENANT = ["operator_admin", "compliance_officer"];

const state = { user: null, tenant: null, users: new Map() };

// ---------------------------------------------------------------------------------------------
// API access

class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || {};
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, { method = "GET", body, text = false, auth = true } = {}) {
  const headers = { Accept: text ? "text/plain, application/json" : "application/json" };
  const bearer = auth ? token() : null;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch {
    throw new ApiError(0, "network", "The control plane could not be reached. · 无法连接服务器。");
  }
  if (resp.ok) {
    if (resp.status === 204) return null;
    return text ? resp.text() : resp.json();
  }
  let error = {};
  try {
    error = (await resp.json()).error || {};
  } catch {
    // not a JSON error body (a proxy in the way?): fall back to the status line
  }
  const err = new ApiError(
    resp.status,
    error.code || `http_${resp.status}`,
    error.message || `${resp.status} ${resp.statusText || "error"}`,
    error.fields,
  );
  if (resp.status === 401 && bearer) {
    // The session expired or was revoked elsewhere: back to the sign-in form.
    endSession("Your session has ended; please sign in again. · 会话已结束，请重新登录。", true);
  }
  throw err;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---------------------------------------------------------------------------------------------
// DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Build an element; children may be strings (become text nodes), nodes, or null. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function stateCell(value) {
  const s = String(value ?? "");
  return el("span", { class: `state state-${s.replace(/[^a-z_]/g, "")}`, text: s });
}

function roleBadges(roles) {
  return (roles || []).map((r) => el("span", { class: "badge", title: r, text: ROLE_LABELS[r] || r }));
}

function showPageStatus(message, kind = "") {
  const box = $("#page-status");
  box.textContent = message || "";
  box.className = `notice ${kind}`.trim();
  box.hidden = !message;
}

// ---------------------------------------------------------------------------------------------
// Forms: values in, API errors out (field-keyed, under the inputs)

function clearErrors(form) {
  for (const p of $$("[data-error-for]", form)) p.textContent = "";
  for (const input of $$("[aria-invalid]", form)) input.removeAttribute("aria-invalid");
  const top = $("[data-form-error]", form);
  top.textContent = "";
  top.hidden = true;
}

function showErrors(form, err) {
  clearErrors(form);
  const unplaced = [];
  let first = null;
  for (const [field, message] of Object.entries(err.fields || {})) {
    const slot = $(`[data-error-for="${CSS.escape(field)}"]`, form);
    if (!slot) {
      unplaced.push(`${field}: ${message}`);
      continue;
    }
    slot.textContent = String(message);
    const input = form.elements.namedItem(field);
    if (input instanceof HTMLElement) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
  }
  const top = $("[data-form-error]", form);
  const placed = Object.keys(err.fields || {}).length - unplaced.length;
  top.textContent =
    placed > 0 && unplaced.length === 0
      ? "Please correct the fields marked below. · 请修改下方标出的字段。"
      : err.message;
  top.hidden = false;
  if (first) first.focus();
}

async function submitting(form, work) {
  const button = $("button[type=submit]", form);
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    await work();
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------------------------------------
// Lists: a table per resource, with "load more" following next_cursor

/**
 * Fill `view`'s [data-list] with a table of `columns` for GET `path`.
 * columns: [{ label, cell: (row) => string | Node, className? }]
 */
async function loadList(view, path, columns, { caption, empty, params = {} } = {}) {
  const box = $("[data-list]", view);
  box.setAttribute("aria-busy", "true");
  box.replaceChildren(el("p", { class: "empty", text: "Loading… · 加载中…" }));
  let page;
  try {
    page = await api(path + query({ ...params, limit: 50 }));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", role: "alert", text: err.message }));
    box.removeAttribute("aria-busy");
    return [];
  }
  const tbody = el("tbody");
  const rows = [...page.data];
  const table = el(
    "table",
    {},
    el("caption", { text: `${caption} — ${page.count} total · 共 ${page.count} 条` }),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c.label })))),
    tbody,
  );
  const addRows = (data) => {
    for (const row of data) {
      tbody.append(
        el("tr", {}, columns.map((c) => el("td", { class: c.className }, c.cell(row) ?? ""))),
      );
    }
  };
  addRows(page.data);
  const parts = [table];
  if (page.data.length === 0) parts.push(el("p", { class: "empty", text: empty }));
  let cursor = page.next_cursor;
  if (cursor) {
    const more = el("button", { type: "button", class: "secondary more", text: "Load more · 加载更多" });
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        const next = await api(path + query({ ...params, limit: 50, cursor }));
        addRows(next.data);
        rows.push(...next.data);
        cursor = next.next_cursor;
        more.hidden = !cursor;
      } catch (err) {
        showPageStatus(err.message, "warn");
      } finally {
        more.disabled = false;
      }
    });
    parts.push(more);
  }
  box.replaceChildren(...parts);
  box.removeAttribute("aria-busy");
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Views

const loaders = {
  tenants(view) {
    $("[data-needs=tenant-create]", view).hidden = !hasRole(CAN_CREATE_TENANT);
    return loadList(
      view,
      "/tenants",
      [
        { label: "Name", cell: (t) => t.name_en },
        { label: "中文名称", cell: (t) => el("span", { lang: "zh-CN", text: t.name_zh }) },
        {
          label: "USCC · 信用代码",
          className: "mono",
          cell: (t) => [
            el("span", { class: "mono", text: t.uscc }),
            t.uscc_checksum_ok ? null : el("span", { class: "bad", text: " (checksum ≠)" }),
          ],
        },
        { label: "State · 状态", cell: (t) => stateCell(t.state) },
        {
          label: "Address pools · 地址池",
          className: "mono",
          cell: (t) => [t.ipv4_pool, el("br"), t.ipv6_pool],
        },
        { label: "Created · 创建", cell: (t) => formatTime(t.created_at) },
      ],
      { caption: "Customer companies", empty: "No tenants yet. · 暂无租户。" },
    );
  },

  pops(view) {
    return loadList(
      view,
      "/pops",
      [
        { label: "Name · 名称", cell: (p) => p.name },
        { label: "Region · 区域", cell: (p) => p.region },
        { label: "Country · 国家", cell: (p) => p.country },
        { label: "Endpoint · 地址", className: "mono", cell: (p) => p.endpoint_host },
        { label: "Ports · 端口", cell: (p) => `${p.port_min}–${p.port_max}` },
        { label: "State · 状态", cell: (p) => stateCell(p.state) },
      ],
      { caption: "Points of presence", empty: "No PoPs yet. · 暂无接入点。" },
    );
  },

  async licences(view) {
    const box = $("[data-compliance]", view);
    box.replaceChildren(el("p", { class: "empty", text: "Loading… · 加载中…" }));
    try {
      box.replaceChildren(...complianceSummary(await api("/operator/compliance")));
    } catch (err) {
      box.replaceChildren(el("p", { class: "error", role: "alert", text: err.message }));
    }
    return loadList(
      view,
      "/operator/licences",
      [
        { label: "Number · 编号", className: "mono", cell: (l) => l.number },
        { label: "Services · 业务", cell: (l) => l.service_codes.join(", ") },
        {
          label: "Provinces · 地区",
          cell: (l) => (l.provinces.includes("*") ? "nationwide · 全国" : l.provinces.join(", ")),
        },
        { label: "Issued by · 发证机关", cell: (l) => l.issuing_authority },
        { label: "Valid · 有效期", cell: (l) => `${l.valid_from} – ${l.valid_to}` },
        { label: "State · 状态", cell: (l) => stateCell(l.status) },
        {
          label: "Expiry · 到期",
          cell: (l) =>
            l.expiry_warning_days == null
              ? l.status === "valid"
                ? `${l.days_to_expiry} days · 天`
                : ""
              : el("span", {
                  class: "bad",
                  text: `${l.days_to_expiry} days left (${l.expiry_warning_days}-day warning) · 即将到期`,
                }),
        },
      ],
      { caption: "Telecom business licences", empty: "No licences recorded. · 暂无许可证。" },
    );
  },

  audit(view) {
    return loadList(
      view,
      "/audit/events",
      [
        { label: "When · 时间", cell: (e) => formatTime(e.occurred_at) },
        { label: "Actor · 操作者", cell: (e) => e.actor },
        { label: "Action · 操作", cell: (e) => e.action },
        { label: "Object · 对象", cell: (e) => e.object_type },
        { label: "Object id", className: "mono", cell: (e) => e.object_id ?? "" },
        { label: "Source IP · 来源", className: "mono", cell: (e) => e.source_ip ?? "" },
      ],
      { caption: "Audit events, newest first", empty: "No events. · 暂无记录。" },
    );
  },

  async users(view) {
    const rows = await loadList(
      view,
      `/tenants/${encodeURIComponent(state.user.tenant_id)}/users`,
      [
        { label: "Email · 邮箱", cell: (u) => u.email },
        { label: "Name · 姓名", cell: (u) => u.display_name },
        { label: "Roles · 角色", cell: (u) => roleBadges(u.roles) },
        { label: "State · 状态", cell: (u) => stateCell(u.state) },
        { label: "2FA", cell: (u) => (u.totp_enabled ? "TOTP ✓" : "—") },
        { label: "Created · 创建", cell: (u) => formatTime(u.created_at) },
      ],
      { caption: "People in your organisation", empty: "No users. · 暂无用户。" },
    );
    for (const u of rows) state.users.set(u.id, u.email);
  },

  async devices(view) {
    const tid = encodeURIComponent(state.user.tenant_id);
    if (hasRole(["tenant_admin"]) && state.users.size === 0) {
      // Show owners by email rather than id; a failure here only costs the nicer names.
      try {
        const page = await api(`/tenants/${tid}/users${query({ limit: 500 })}`);
        for (const u of page.data) state.users.set(u.id, u.email);
      } catch {
        // keep ids
      }
    }
    const owner = (d) =>
      d.user_id === state.user.id ? `${state.user.email} (you · 本人)` : state.users.get(d.user_id) || d.user_id;
    return loadList(
      view,
      `/tenants/${tid}/devices`,
      [
        { label: "Name · 名称", cell: (d) => d.name },
        { label: "Owner · 所属用户", cell: owner },
        { label: "Public key · 公钥", className: "mono", cell: (d) => d.public_key },
        { label: "Addresses · 地址", className: "mono", cell: (d) => [d.ipv4, el("br"), d.ipv6] },
        { label: "State · 状态", cell: (d) => stateCell(d.state) },
        {
          label: "Configuration · 配置",
          cell: (d) =>
            el("button", {
              type: "button",
              class: "small secondary",
              "aria-label": `Download configuration for ${d.name} · 下载配置`,
              text: "Download config · 下载配置",
              onclick: (ev) => downloadConfig(view, d, ev.currentTarget),
            }),
        },
      ],
      {
        caption: hasRole(["tenant_admin"]) ? "All devices in your organisation" : "Your devices",
        empty: "No devices yet: register one below. · 暂无设备，请在下方登记。",
      },
    );
  },
};

/** The compliance status as notices: licence warnings, rule problems, coverage and ownership. */
function complianceSummary(status) {
  const parts = [];
  for (const w of status.warnings) {
    parts.push(el("p", { class: "notice warn", role: "status", text: `⚠ ${w.message}` }));
  }
  for (const p of status.problems) {
    parts.push(
      el(
        "p",
        { class: "notice warn error", role: "alert" },
        el("strong", { text: p.rule }),
        ` ${p.message} `,
        el("span", { class: "hint", text: `(source: ${p.source})` }),
      ),
    );
  }
  if (parts.length === 0) {
    parts.push(el("p", { class: "notice", text: "No licence warnings or rule problems. · 无预警。" }));
  }
  const covered = status.covered_provinces.includes("*")
    ? "nationwide · 全国"
    : status.covered_provinces.join(", ") || "nothing · 无";
  const own = status.ownership;
  parts.push(
    el("p", {
      class: "hint",
      text:
        `${status.service_code} covers: ${covered}. Shareholders: ${own.total_percent}% recorded, ` +
        `${own.foreign_percent}% foreign (cap: ${own.foreign_cap || "none"}). ` +
        `Rules ${status.rules_version}, ${status.today} (China).`,
    }),
  );
  return parts;
}

function deviceStatus(view, message, kind) {
  const box = $("[data-device-status]", view);
  box.textContent = message || "";
  box.className = `notice ${kind || ""}`.trim();
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.hidden = !message;
}

async function downloadConfig(view, device, button) {
  button.disabled = true;
  deviceStatus(view, "");
  try {
    const text = await api(
      `/tenants/${encodeURIComponent(device.tenant_id)}/devices/${encodeURIComponent(device.id)}/wireguard.conf`,
      { text: true },
    );
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    const safe = String(device.name).replace(/[^\p{L}\p{N}._-]+/gu, "-").slice(0, 60) || "device";
    const a = el("a", { href: url, download: `tongdao-${safe}.conf`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    deviceStatus(
      view,
      `Configuration for “${device.name}” downloaded. Put this device's private key in the PrivateKey line, then import it into the WireGuard app. · 配置已下载：填入本设备私钥后导入 WireGuard 应用。`,
    );
  } catch (err) {
    const prefix = err.status === 409 ? "Not ready yet · 尚未就绪: " : "";
    deviceStatus(view, prefix + err.message, "warn error");
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Session, navigation, routing

function hasRole(roles) {
  return (state.user?.roles || []).some((r) => roles.includes(r));
}

function allowedViews() {
  return VIEWS.filter((v) => hasRole(v.roles));
}

function currentRoute() {
  return location.hash.replace(/^#\/?/, "");
}

async function route() {
  if (!state.user) return;
  const views = allowedViews();
  let id = currentRoute();
  if (!views.some((v) => v.id === id)) {
    if (views.length === 0) {
      showPageStatus("Your roles give you no pages in this console. · 您的角色无可用页面。", "warn");
      return;
    }
    id = views[0].id;
    history.replaceState(null, "", `#/${id}`);
  }
  for (const a of $$("#nav a")) {
    if (a.dataset.nav === id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const section of $$("section[data-view]")) section.hidden = section.dataset.view !== id;
  const view = $(`[data-view="${id}"]`);
  document.title = `${views.find((v) => v.id === id).label} — Tongdao 通道`;
  await loaders[id](view);
}

function buildHeader() {
  const u = state.user;
  $("#me-email").textContent = u.email;
  $("#me-email").title = u.display_name || "";
  $("#me-roles").replaceChildren(...roleBadges(u.roles));
  const tenantLine = $("#me-tenant");
  tenantLine.hidden = true;
  if (u.tenant_id) {
    api(`/tenants/${encodeURIComponent(u.tenant_id)}`)
      .then((t) => {
        state.tenant = t;
        tenantLine.textContent = t.name_zh ? `${t.name_en} · ${t.name_zh}` : t.name_en;
        tenantLine.hidden = false;
      })
      .catch(() => {});
  }
  $("#nav").replaceChildren(
    ...allowedViews().map((v) =>
      el("li", {}, el("a", { href: `#/${v.id}`, "data-nav": v.id, text: v.label })),
    ),
  );
  $("#topbar").hidden = false;
}

function showLogin(message, warn = false) {
  state.user = null;
  state.tenant = null;
  state.users.clear();
  $("#topbar").hidden = true;
  for (const section of $$("section[data-view]")) section.hidden = true;
  for (const form of $$("[data-view] form")) {
    form.reset();
    clearErrors(form);
  }
  $("#login-view").hidden = false;
  const form = $("#login-form");
  clearErrors(form);
  form.elements.namedItem("password").value = "";
  form.elements.namedItem("totp_code").value = "";
  showPageStatus(message, warn ? "warn" : "");
  document.title = "Sign in — Tongdao 通道";
  form.elements.namedItem("email").focus();
}

function endSession(message, warn) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (location.hash) history.replaceState(null, "", location.pathname);
  showLogin(message, warn);
}

async function enterApp(user) {
  state.user = user;
  $("#login-view").hidden = true;
  showPageStatus("");
  buildHeader();
  $("#main").focus();
  await route();
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const email = form.elements.namedItem("email").value.trim();
  const password = form.elements.namedItem("password").value;
  // The code field is always shown: the API answers a missing code like a wrong password,
  // so that a right password is never confirmed to someone who only guessed it.
  const totp = form.elements.namedItem("totp_code").value.trim();
  const body = { email, password };
  if (totp) body.totp_code = totp;
  await submitting(form, async () => {
    try {
      const resp = await api("/auth/login", { method: "POST", body, auth: false });
      sessionStorage.setItem(TOKEN_KEY, resp.token);
      form.elements.namedItem("password").value = "";
      form.elements.namedItem("totp_code").value = "";
      clearErrors(form);
      await enterApp(resp.user);
    } catch (err) {
      form.elements.namedItem("totp_code").value = "";
      showErrors(form, err);
    }
  });
}

async function onLogout() {
  const button = $("#logout");
  button.disabled = true;
  try {
    await api("/auth/logout", { method: "POST" });
  } catch {
    // the token may already be gone; signing out locally is what matters
  } finally {
    button.disabled = false;
  }
  endSession("You are signed out. · 您已退出登录。");
}

async function onCreateTenant(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const value = (name) => form.elements.namedItem(name).value.trim();
  const body = { name_en: value("name_en"), name_zh: value("name_zh"), uscc: value("uscc") };
  await submitting(form, async () => {
    try {
      const tenant = await api("/tenants", { method: "POST", body });
      form.reset();
      clearErrors(form);
      await loaders.tenants($('[data-view="tenants"]'));
      showPageStatus(`Tenant “${tenant.name_en}” created (state: ${tenant.state}). · 租户已创建。`);
    } catch (err) {
      showErrors(form, err);
    }
  });
}

async function onRegisterDevice(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const view = $('[data-view="devices"]');
  const body = {
    name: form.elements.namedItem("name").value.trim(),
    public_key: form.elements.namedItem("public_key").value.trim(),
  };
  await submitting(form, async () => {
    try {
      const device = await api(`/tenants/${encodeURIComponent(state.user.tenant_id)}/devices`, {
        method: "POST",
        body,
      });
      form.reset();
      clearErrors(form);
      await loaders.devices(view);
      deviceStatus(
        view,
        `Device “${device.name}” registered with address ${device.ipv4}. · 设备已登记。`,
      );
    } catch (err) {
      showErrors(form, err);
    }
  });
}

async function start() {
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout").addEventListener("click", onLogout);
  $("#tenant-form").addEventListener("submit", onCreateTenant);
  $("#device-form").addEventListener("submit", onRegisterDevice);
  window.addEventListener("hashchange", () => {
    showPageStatus("");
    route();
  });
  if (token()) {
    let me;
    try {
      me = await api("/auth/me");
    } catch (err) {
      // On 401 api() has already gone back to the sign-in form with a message.
      if (err.status !== 401) endSession(err.message, true);
      return;
    }
    await enterApp(me);
    return;
  }
  showLogin("");
}

start();
