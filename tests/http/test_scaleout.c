/* test_scaleout.c — what only scale-out mode has to prove (CONTRACT §2): two boxoffice
 * instances sharing PostgreSQL and Redis behave as one service. Seats are never held
 * twice across instances, money stays exact when one user's charges and payments are
 * spread over both, one instance can crash under load while the other keeps serving
 * and nothing acknowledged is lost, and the waiting room is one FIFO line whichever
 * instance a token came from. Always scale-out, whatever BOXOFFICE_TEST_MODE says;
 * fails (never skips) without BOXOFFICE_TEST_PG_URL and BOXOFFICE_TEST_REDIS_URL.
 * Worker threads never assert: they record outcomes, the main thread judges. Each
 * test prints its figures on lines starting with "figure:". */
#include "harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(scaleout, .fini = teardown, .timeout = 240);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        srv.mode = BX_MODE_SCALEOUT;                                                                                   \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

/* Instance index that answered through nginx: the last address of X-Upstream
 * ("A, B" when nginx tried A first); -1 if none. */
static int served_by(const struct bx_resp *r)
{
    const char *last = strrchr(r->upstream, ',');
    last = last ? last + 1 : r->upstream;
    while (*last == ' ')
        last++;
    for (int i = 0; i < srv.ninst; i++) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", srv.inst[i].port);
        if (strcmp(last, addr) == 0)
            return i;
    }
    return -1;
}

/* a transport failure or an answer from nginx instead of boxoffice: retry */
static bool transient(const struct bx_resp *r)
{
    return r->status == 0 || r->status == 502 || r->status == 503 || r->status == 504;
}

/* ------------------------------------------------------------ users in bulk */

struct user {
    char name[48];
    char at[160]; /* access token */
    char qt[64];  /* queue token ("" if none) */
    int64_t uid;
};

struct setup_job {
    struct user *u;
    int from, to;
    int64_t concert; /* 0: no queue token */
    int via;         /* -1: nginx, else instance i+... alternating from via */
    char err[600];
};

static void job_fail(struct setup_job *j, const char *what, const struct bx_resp *r)
{
    if (j->err[0] == '\0')
        snprintf(j->err, sizeof j->err, "%.60s: %ld %.200s%.200s", what, r->status, r->body, r->status ? "" : r->error);
}

/* Signs up, logs in and (with a concert) issues a queue token for users [from, to). */
static void *setup_main(void *arg)
{
    struct setup_job *j = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    for (int i = j->from; i < j->to && j->err[0] == '\0'; i++) {
        struct user *u = &j->u[i];
        struct bx_resp *r = bx_http_json(&c, "POST", "/api/v1/users", NULL,
                                         json_pack("{s:s,s:s}", "name", u->name, "password", BX_PASSWORD));
        if (r->status != 201) {
            job_fail(j, "signup", r);
            break;
        }
        u->uid = bx_jint(r->json, "userId");
        r = bx_http_json(&c, "POST", "/api/v1/sessions", NULL,
                         json_pack("{s:s,s:s}", "name", u->name, "password", BX_PASSWORD));
        if (r->status != 200) {
            job_fail(j, "login", r);
            break;
        }
        snprintf(u->at, sizeof u->at, "%s", bx_jstr(r->json, "accessToken"));
        if (j->concert <= 0)
            continue;
        r = bx_http(&c, "POST", bx_str(&c, "/api/v1/concerts/%lld/queue/tokens", (long long)j->concert),
                    &(struct bx_req){.bearer = u->at});
        if (r->status != 201 || strcmp(bx_jstr(r->json, "status"), "ACTIVE") != 0) {
            job_fail(j, "queue token (expected 201 ACTIVE)", r);
            break;
        }
        snprintf(u->qt, sizeof u->qt, "%s", bx_jstr(r->json, "token"));
        bx_client_release(&c); /* a fresh client per user keeps memory flat */
        bx_client_init(&c, &srv);
    }
    bx_client_release(&c);
    return NULL;
}

/* n users named <prefix>-<i>, created through nginx by 8 threads; with concert > 0
 * each gets an ACTIVE queue token for it. */
static struct user *make_users(const char *prefix, int n, int64_t concert)
{
    struct user *u = calloc((size_t)n, sizeof *u);
    cr_assert(u != NULL);
    for (int i = 0; i < n; i++)
        snprintf(u[i].name, sizeof u[i].name, "%s-%d", prefix, i);
    enum { T = 8 };
    struct setup_job jobs[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        jobs[t] = (struct setup_job){.u = u, .from = n * t / T, .to = n * (t + 1) / T, .concert = concert};
        cr_assert_eq(pthread_create(&th[t], NULL, setup_main, &jobs[t]), 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++)
        if (jobs[t].err[0] != '\0') {
            bx_server_log_tail(&srv, 20);
            free(u);
            cr_assert_fail("setting up users: %s", jobs[t].err);
        }
    return u;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void expect_audit_clean(const char *when)
{
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    if (rc != 0)
        bx_server_log_tail(&srv, 20);
    cr_assert_eq(rc, 0, "audit against PostgreSQL %s: exit %d:\n%s", when, rc, out);
    free(out);
}

/* ------------------------------------------------------------ (a) hold race */

/* One hold attempt of the burst: its own easy handle in one curl multi, so all
 * 2,000 are on the wire at once. */
struct shot {
    CURL *h;
    struct curl_slist *hd;
    char body[96];
    char *resp;
    size_t len;
    long status;
    int inst, user, seat;
    int tries;
};

static size_t shot_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct shot *s = ud;
    size_t n = size * nmemb;
    char *nb = realloc(s->resp, s->len + n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + s->len, p, n);
    s->resp = nb;
    s->len += n;
    s->resp[s->len] = '\0';
    return n;
}

static void shot_prepare(struct shot *s, const struct user *u, int64_t sid)
{
    char url[128], line[256];
    if (s->h == NULL)
        s->h = curl_easy_init();
    else
        curl_easy_reset(s->h);
    free(s->resp);
    s->resp = NULL;
    s->len = 0;
    s->status = 0;
    curl_slist_free_all(s->hd);
    s->hd = NULL;
    snprintf(url, sizeof url, "%s/api/v1/reservations", srv.inst[s->inst].base_url);
    snprintf(s->body, sizeof s->body, "{\"scheduleId\":%lld,\"seatNo\":%d}", (long long)sid, s->seat);
    snprintf(line, sizeof line, "Authorization: Bearer %s", u->at);
    s->hd = curl_slist_append(s->hd, line);
    snprintf(line, sizeof line, "X-Queue-Token: %s", u->qt);
    s->hd = curl_slist_append(s->hd, line);
    s->hd = curl_slist_append(s->hd, "Content-Type: application/json");
    s->hd = curl_slist_append(s->hd, "Expect:");
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hd);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, shot_write);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
    s->tries++;
}

/* Runs every shot whose status is 0 at once; returns when all have answered. */
static void fire(struct shot *shots, int n, const struct user *users, int64_t sid, bool only_pending)
{
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n);
    for (int i = 0; i < n; i++) {
        if (only_pending && shots[i].status != 0)
            continue;
        shot_prepare(&shots[i], &users[shots[i].user], sid);
        curl_multi_add_handle(m, shots[i].h);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct shot *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &s->status);
            else
                s->status = -1; /* transport failure */
            curl_multi_remove_handle(m, msg->easy_handle);
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    curl_multi_cleanup(m);
}

Test(scaleout, two_thousand_holds_on_fifty_seats_over_two_instances_hold_each_seat_once)
{
    enum { USERS = 500, PER_USER = 4, N = USERS * PER_USER, SEATS = 50 };
    raise_fd_limit();
    START("--rate-limit", "0");
    int64_t cid = bx_admin_concert(&C, "Race over two instances");
    int64_t sid = bx_admin_schedule(&C, cid, SEATS, 50000);
    struct user *users = make_users("racer", USERS, cid);

    /* attempt k: user k/4, seat k%50+1 (a user's four attempts are four different
     * seats, within --max-seats-per-user 4), straight to instance k%2 */
    struct shot *shots = calloc(N, sizeof *shots);
    cr_assert(shots != NULL);
    for (int k = 0; k < N; k++)
        shots[k] = (struct shot){.inst = k % 2, .user = k / PER_USER, .seat = k % SEATS + 1};
    int64_t t0 = bx_now_ms();
    fire(shots, N, users, sid, false);
    int64_t burst_ms = bx_now_ms() - t0;
    /* 503 (the instance shed load) or a transport failure: that attempt was not
     * decided; send those again, at most twice */
    int resent = 0;
    for (int round = 0; round < 2; round++) {
        int pending = 0;
        for (int k = 0; k < N; k++)
            if (shots[k].status == 503 || shots[k].status == -1) {
                shots[k].status = 0;
                pending++;
            }
        if (pending == 0)
            break;
        resent += pending;
        fire(shots, N, users, sid, true);
    }

    int held = 0, unavailable = 0, other = 0, by_inst[2] = {0, 0};
    int owner[SEATS + 1];
    memset(owner, -1, sizeof owner);
    const char *first_other = NULL;
    for (int k = 0; k < N; k++) {
        struct shot *s = &shots[k];
        json_t *j = s->resp ? json_loads(s->resp, 0, NULL) : NULL;
        if (s->status == 201) {
            int seat = (int)bx_jint(j, "seatNo");
            cr_assert_eq(seat, s->seat, "attempt %d on seat %d got seat %d: %s", k, s->seat, seat, s->resp);
            cr_assert_eq(owner[seat], -1, "seat %d held twice: by attempts %d (instance %c) and %d (instance %c)", seat,
                         owner[seat], 'A' + owner[seat] % 2, k, 'A' + k % 2);
            owner[seat] = k;
            held++;
            by_inst[s->inst]++;
        } else if (s->status == 409 && strcmp(bx_jstr(json_object_get(j, "error"), "code"), "SEAT_UNAVAILABLE") == 0) {
            unavailable++;
        } else {
            other++;
            if (first_other == NULL)
                first_other = bx_str(&C, "attempt %d: %ld %s", k, s->status, s->resp ? s->resp : "(no body)");
        }
        json_decref(j);
    }
    printf("figure: 2000 concurrent hold attempts on 50 seats, sent straight to the instances alternately (1000 to A, "
           "1000 to B, %d users x %d seats): %d holds (A %d, B %d), %d SEAT_UNAVAILABLE, %d other, %d re-sent after "
           "503; no seat twice; burst answered in %lld ms\n",
           USERS, PER_USER, held, by_inst[0], by_inst[1], unavailable, other, resent, (long long)burst_ms);
    fflush(stdout);
    for (int k = 0; k < N; k++) {
        curl_easy_cleanup(shots[k].h);
        curl_slist_free_all(shots[k].hd);
        free(shots[k].resp);
    }
    free(shots);
    cr_assert_eq(other, 0, "%d attempts answered neither 201 nor 409 SEAT_UNAVAILABLE; first: %s", other, first_other);
    cr_assert_eq(held, SEATS, "%d holds for %d seats", held, SEATS);

    /* both instances show the same full seat map */
    for (int i = 0; i < 2; i++) {
        struct bx_client direct;
        bx_client_init_instance(&direct, &srv, i);
        struct bx_resp *r = bx_http(&direct, "GET", bx_str(&direct, "/api/v1/schedules/%lld/seats", (long long)sid),
                                    &(struct bx_req){.bearer = users[0].at, .queue_token = users[0].qt});
        int navail = -1, nheld = 0;
        if (r->status == 200) {
            navail = 0;
            size_t x;
            json_t *seat;
            json_array_foreach(json_object_get(r->json, "seats"), x, seat)
            {
                navail += json_is_true(json_object_get(seat, "available"));
                nheld += strcmp(bx_jstr(seat, "status"), "HELD") == 0;
            }
        }
        long st = r->status;
        bx_client_release(&direct);
        cr_assert_eq(st, 200, "seat map from instance %c: %ld", 'A' + i, st);
        cr_assert_eq(navail, 0, "instance %c shows %d seats available after 50 holds", 'A' + i, navail);
        cr_assert_eq(nheld, SEATS, "instance %c shows %d seats HELD", 'A' + i, nheld);
    }
    free(users);
    expect_audit_clean("after the hold race");
}

/* ------------------------------------------------------------ (b) money over both instances */

enum { MU = 8, MSEATS = 4, MCHARGES = 25, MCHARGE = 1000, MPRICE = 10000 };

struct money_user {
    struct user u;
    int64_t rid[MSEATS];
    /* written by the workers of this user, each its own fields */
    int charges_ok[2];   /* per instance */
    int charges_bad[2];  /* answered neither 200 nor a transient error after retries */
    int paid[2][MSEATS]; /* 201 answers per instance and reservation */
    int64_t paid_amount[2];
    int already_paid[2], insufficient[2], transient[2], other[2];
    char err[2][256];
};

struct money_job {
    struct money_user *m;
    int inst;
    bool payer;
};

static void *money_main(void *arg)
{
    struct money_job *j = arg;
    struct money_user *m = j->m;
    int i = j->inst;
    struct bx_client c;
    bx_client_init_instance(&c, &srv, i);
    if (!j->payer) {
        for (int k = 0; k < MCHARGES; k++) {
            char key[64];
            snprintf(key, sizeof key, "charge-%c-%d", 'A' + i, k);
            for (int tries = 0;; tries++) {
                struct bx_resp *r = bx_http_json(&c, "POST", "/api/v1/users/me/balance/charge",
                                                 &(struct bx_req){.bearer = m->u.at, .idem_key = key},
                                                 json_pack("{s:i}", "amount", MCHARGE));
                if (r->status == 200) {
                    m->charges_ok[i]++;
                } else if (transient(r) && tries < 20) {
                    m->transient[i]++;
                    bx_sleep_ms(10);
                    continue;
                } else {
                    m->charges_bad[i]++;
                    snprintf(m->err[i], sizeof m->err[i], "charge: %ld %.200s", r->status, r->body);
                }
                break;
            }
        }
    } else {
        bool settled[MSEATS] = {false};
        int left = MSEATS;
        int64_t deadline = bx_now_ms() + 60000;
        while (left > 0 && bx_now_ms() < deadline) {
            for (int s = 0; s < MSEATS; s++) {
                if (settled[s])
                    continue;
                char key[64];
                snprintf(key, sizeof key, "pay-%c-%lld", 'A' + i, (long long)m->rid[s]);
                struct bx_resp *r =
                    bx_http_json(&c, "POST", "/api/v1/payments",
                                 &(struct bx_req){.bearer = m->u.at, .queue_token = m->u.qt, .idem_key = key},
                                 json_pack("{s:I}", "reservationId", (json_int_t)m->rid[s]));
                const char *code = bx_err_code(r);
                if (r->status == 201) {
                    m->paid[i][s]++;
                    m->paid_amount[i] += bx_jint(r->json, "amount");
                    settled[s] = true;
                } else if (r->status == 409 && strcmp(code, "ALREADY_PAID") == 0) {
                    m->already_paid[i]++;
                    settled[s] = true;
                } else if (r->status == 410 && strcmp(code, "TOKEN_EXPIRED") == 0) {
                    /* the other instance paid the last open hold, which spent the token:
                     * settled if the reservation is confirmed (checked by the main thread) */
                    m->already_paid[i]++;
                    settled[s] = true;
                } else if (r->status == 402 && strcmp(code, "INSUFFICIENT_BALANCE") == 0) {
                    m->insufficient[i]++;
                    bx_sleep_ms(5);
                } else if (transient(r)) {
                    m->transient[i]++;
                    bx_sleep_ms(10);
                } else {
                    m->other[i]++;
                    settled[s] = true;
                    snprintf(m->err[i], sizeof m->err[i], "pay: %ld %.200s", r->status, r->body);
                }
                left -= settled[s];
            }
        }
    }
    bx_client_release(&c);
    return NULL;
}

Test(scaleout, charges_and_payments_of_the_same_users_over_both_instances_keep_money_exact)
{
    START("--rate-limit", "0");
    int64_t cid = bx_admin_concert(&C, "Money over two instances");
    int64_t sid = bx_admin_schedule(&C, cid, 50, MPRICE);
    struct user *users = make_users("payer", MU, cid);
    struct money_user *m = calloc(MU, sizeof *m);
    cr_assert(m != NULL);
    for (int u = 0; u < MU; u++) {
        m[u].u = users[u];
        for (int s = 0; s < MSEATS; s++)
            m[u].rid[s] = bx_hold(&C, m[u].u.at, m[u].u.qt, sid, u * MSEATS + s + 1);
    }
    free(users);

    /* per user: a charger and a payer on each instance, all at once. The payers
     * of A and B race for the same four reservations with different keys. */
    enum { J = MU * 4 };
    struct money_job jobs[J];
    pthread_t th[J];
    int nj = 0;
    for (int u = 0; u < MU; u++)
        for (int i = 0; i < 2; i++)
            for (int p = 0; p < 2; p++)
                jobs[nj++] = (struct money_job){.m = &m[u], .inst = i, .payer = p};
    int64_t t0 = bx_now_ms();
    for (int k = 0; k < J; k++)
        cr_assert_eq(pthread_create(&th[k], NULL, money_main, &jobs[k]), 0);
    for (int k = 0; k < J; k++)
        pthread_join(th[k], NULL);
    int64_t ms = bx_now_ms() - t0;

    int charges[2] = {0, 0}, payments[2] = {0, 0}, lost_race = 0, insufficient = 0, retried = 0;
    for (int u = 0; u < MU; u++) {
        struct money_user *x = &m[u];
        int64_t charged = 0, paid = 0;
        for (int i = 0; i < 2; i++) {
            cr_assert(x->err[i][0] == '\0', "user %d on instance %c: %s", u, 'A' + i, x->err[i]);
            cr_assert_eq(x->charges_bad[i], 0);
            charges[i] += x->charges_ok[i];
            charged += (int64_t)x->charges_ok[i] * MCHARGE;
            paid += x->paid_amount[i];
            lost_race += x->already_paid[i];
            insufficient += x->insufficient[i];
            retried += x->transient[i];
        }
        for (int s = 0; s < MSEATS; s++) {
            int n = x->paid[0][s] + x->paid[1][s];
            payments[x->paid[0][s] ? 0 : 1] += n;
            cr_assert_eq(n, 1, "user %d reservation %lld paid %d times (A %d, B %d)", u, (long long)x->rid[s], n,
                         x->paid[0][s], x->paid[1][s]);
            struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)x->rid[s]),
                                        &(struct bx_req){.bearer = x->u.at});
            bx_expect(r, 200, NULL);
            cr_assert_str_eq(bx_jstr(r->json, "status"), "CONFIRMED", "%s", r->body);
        }
        cr_assert_eq(charged, (int64_t)2 * MCHARGES * MCHARGE, "user %d: %lld charged", u, (long long)charged);
        /* the balance is the same seen from either instance, and exact */
        for (int i = 0; i < 2; i++) {
            struct bx_client direct;
            bx_client_init_instance(&direct, &srv, i);
            struct bx_resp *r =
                bx_http(&direct, "GET", "/api/v1/users/me/balance", &(struct bx_req){.bearer = x->u.at});
            long st = r->status;
            int64_t bal = bx_jint(r->json, "balance");
            bx_client_release(&direct);
            cr_assert_eq(st, 200);
            cr_assert_eq(bal, charged - paid,
                         "user %d via %c: balance %lld, acknowledged charges %lld - acknowledged payments %lld", u,
                         'A' + i, (long long)bal, (long long)charged, (long long)paid);
        }
    }
    printf("figure: charges and payments of %d users over both instances at once: %d charges acknowledged (A %d, B "
           "%d), %d payments (A %d, B %d), each reservation paid once while both instances raced to pay it (%d "
           "refusals ALREADY_PAID/TOKEN_EXPIRED), %d insufficient-balance retries, %d transient retries, %lld ms; "
           "balance = charges - payments for every user\n",
           MU, charges[0] + charges[1], charges[0], charges[1], payments[0] + payments[1], payments[0], payments[1],
           lost_race, insufficient, retried, (long long)ms);
    fflush(stdout);
    free(m);
    expect_audit_clean("after concurrent charges and payments");
    printf("audit: clean against PostgreSQL after %d charges and %d payments over two instances\n",
           charges[0] + charges[1], payments[0] + payments[1]);
    fflush(stdout);
}

/* ------------------------------------------------------------ (c) SIGKILL under load */

enum { KW = 8, KSEATS = 5000, KPRICE = 1000, KCHARGE = 1500 };

struct acked_payment {
    int64_t payment_id, reservation_id, amount;
};

struct kill_worker {
    int idx;
    struct user u;
    int64_t cid, sid;
    volatile int *stop;
    volatile int *phase; /* 0 both up, 1 B down, 2 B back */
    /* results (this worker only) */
    int64_t charged;
    int charges, holds, adopted;
    struct acked_payment *paid;
    int npaid, cappaid;
    int64_t *requested; /* reservations we asked to pay */
    int nrequested;
    int requests, ok_by[3][2]; /* answered 2xx, by phase and instance */
    int failed;                /* transport error or 502/503/504: retried */
    int unexpected;
    char err[256];
};

static void kw_note(struct kill_worker *w, const char *what, const struct bx_resp *r)
{
    w->unexpected++;
    if (w->err[0] == '\0')
        snprintf(w->err, sizeof w->err, "%s: %ld %.200s", what, r->status, r->status ? r->body : r->error);
}

/* one request with the worker's bookkeeping; NULL when the test is stopping */
static struct bx_resp *kw_send(struct kill_worker *w, struct bx_client *c, const char *method, const char *path,
                               const struct bx_req *rq, json_t *body)
{
    for (;;) {
        struct bx_resp *r = bx_http_json(c, method, path, rq, body ? json_incref(body) : NULL);
        w->requests++;
        if (!transient(r)) {
            int by = served_by(r);
            if (r->status < 300 && by >= 0)
                w->ok_by[*w->phase][by]++;
            json_decref(body);
            return r;
        }
        /* in flight on the killed instance (nginx does not re-send a POST), or
         * refused while nginx still thought it was up: same request again, same key */
        w->failed++;
        bx_client_reset(c);
        bx_sleep_ms(20);
    }
}

static void *kill_worker_main(void *arg)
{
    struct kill_worker *w = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    char qt[64] = "";
    for (int round = 0; !*w->stop && round < KSEATS && w->unexpected == 0; round++) {
        int seat = round + 1;
        char key[64];
        /* 1. charge, retried with its key until answered */
        snprintf(key, sizeof key, "kc-%d-%d", w->idx, round);
        struct bx_resp *r =
            kw_send(w, &c, "POST", "/api/v1/users/me/balance/charge",
                    &(struct bx_req){.bearer = w->u.at, .idem_key = key}, json_pack("{s:i}", "amount", KCHARGE));
        if (r->status != 200) {
            kw_note(w, "charge", r);
            break;
        }
        w->charged += KCHARGE;
        w->charges++;
        /* 2. a live token (paying spent the last one) */
        if (qt[0] == '\0') {
            r = kw_send(w, &c, "POST", bx_str(&c, "/api/v1/concerts/%lld/queue/tokens", (long long)w->cid),
                        &(struct bx_req){.bearer = w->u.at}, NULL);
            if ((r->status != 200 && r->status != 201) || strcmp(bx_jstr(r->json, "status"), "ACTIVE") != 0) {
                kw_note(w, "queue token", r);
                break;
            }
            snprintf(qt, sizeof qt, "%s", bx_jstr(r->json, "token"));
        }
        /* 3. hold the next seat; an answer lost in flight shows up as our own hold */
        struct bx_req q = {.bearer = w->u.at, .queue_token = qt};
        json_t *hb = json_pack("{s:I,s:i}", "scheduleId", (json_int_t)w->sid, "seatNo", seat);
        r = kw_send(w, &c, "POST", "/api/v1/reservations", &q, hb);
        int64_t rid = 0;
        if (r->status == 201) {
            rid = bx_jint(r->json, "reservationId");
        } else if (r->status == 409 && strcmp(bx_err_code(r), "SEAT_UNAVAILABLE") == 0) {
            struct bx_resp *l =
                kw_send(w, &c, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = w->u.at}, NULL);
            rid = bx_find_held(l->json, w->sid, seat);
            if (rid <= 0) {
                kw_note(w, "hold (seat taken, not by us)", r);
                break;
            }
            w->adopted++;
        } else {
            kw_note(w, "hold", r);
            break;
        }
        w->holds++;
        /* 4. pay, retried with its key until answered */
        snprintf(key, sizeof key, "kp-%lld", (long long)rid);
        w->requested[w->nrequested++] = rid;
        r = kw_send(w, &c, "POST", "/api/v1/payments",
                    &(struct bx_req){.bearer = w->u.at, .queue_token = qt, .idem_key = key},
                    json_pack("{s:I}", "reservationId", (json_int_t)rid));
        if (r->status != 201) {
            kw_note(w, "payment", r);
            break;
        }
        if (w->npaid == w->cappaid) {
            w->cappaid = w->cappaid ? w->cappaid * 2 : 64;
            w->paid = realloc(w->paid, (size_t)w->cappaid * sizeof *w->paid);
        }
        w->paid[w->npaid++] = (struct acked_payment){bx_jint(r->json, "paymentId"), rid, bx_jint(r->json, "amount")};
        qt[0] = '\0';          /* the payment spent the token */
        bx_client_release(&c); /* a fresh client per round keeps memory flat */
        bx_client_init(&c, &srv);
    }
    bx_client_release(&c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool has_i64(const int64_t *sorted, int n, int64_t v)
{
    return bsearch(&v, sorted, (size_t)n, sizeof v, cmp_i64) != NULL;
}

Test(scaleout, an_instance_killed_under_load_loses_nothing_acknowledged_and_rejoins)
{
    START("--rate-limit", "0", "--max-seats-per-user", "5000");
    int64_t cid = bx_admin_concert(&C, "Crash under load");
    struct user *users = make_users("crash", KW, 0);
    struct kill_worker *w = calloc(KW, sizeof *w);
    cr_assert(w != NULL);
    volatile int stop = 0, phase = 0;
    for (int i = 0; i < KW; i++) {
        w[i] = (struct kill_worker){.idx = i, .u = users[i], .cid = cid, .stop = &stop, .phase = &phase};
        w[i].sid = bx_admin_schedule(&C, cid, KSEATS, KPRICE);
        w[i].requested = calloc(KSEATS, sizeof *w[i].requested);
    }
    free(users);
    pthread_t th[KW];
    for (int i = 0; i < KW; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, kill_worker_main, &w[i]), 0);

    bx_sleep_ms(1500);
    int64_t t_kill = bx_now_ms();
    int st = bx_instance_kill(&srv, 1);
    phase = 1;
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "instance B was not killed by SIGKILL");
    bx_sleep_ms(2000);
    int64_t t_restart = bx_now_ms();
    bx_instance_relaunch(&srv, 1); /* waits for 200 from B's own /readyz */
    int64_t restart_ms = bx_now_ms() - t_restart;
    phase = 2;
    /* nginx tries a failed instance again after fail_timeout (whole seconds, so up
     * to ~2 s with fail_timeout=1s): B has rejoined when nginx routes to it again */
    bx_wait_balanced(&srv, 10000);
    int64_t rejoin_ms = bx_now_ms() - t_restart;
    bx_sleep_ms(1000);
    stop = 1;
    for (int i = 0; i < KW; i++)
        pthread_join(th[i], NULL);
    int64_t down_ms = t_restart + restart_ms - t_kill;

    int requests = 0, failed = 0, adopted = 0, ok_by[3][2] = {{0}}, charges = 0, holds = 0, payments = 0;
    for (int i = 0; i < KW; i++) {
        cr_assert(w[i].unexpected == 0, "worker %d: %s", i, w[i].err);
        requests += w[i].requests;
        failed += w[i].failed;
        adopted += w[i].adopted;
        charges += w[i].charges;
        holds += w[i].holds;
        payments += w[i].npaid;
        for (int p = 0; p < 3; p++)
            for (int k = 0; k < 2; k++)
                ok_by[p][k] += w[i].ok_by[p][k];
    }
    /* B's own readiness, and nginx sends it work again */
    struct bx_client direct;
    bx_client_init_instance(&direct, &srv, 1);
    long ready = bx_http(&direct, "GET", "/readyz", NULL)->status;
    bx_client_release(&direct);

    /* every acknowledged payment is in the history, nothing else is */
    int missing = 0, extra = 0, history = 0;
    for (int i = 0; i < KW; i++) {
        struct kill_worker *x = &w[i];
        int64_t *acked = calloc((size_t)x->npaid + 1, sizeof *acked);
        for (int k = 0; k < x->npaid; k++)
            acked[k] = x->paid[k].payment_id;
        qsort(acked, (size_t)x->npaid, sizeof *acked, cmp_i64);
        qsort(x->requested, (size_t)x->nrequested, sizeof *x->requested, cmp_i64);
        int seen = 0;
        int64_t paid_sum = 0;
        char before[64] = "";
        for (;;) {
            struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/users/me/payments?limit=100%s", before),
                                        &(struct bx_req){.bearer = x->u.at});
            bx_expect(r, 200, NULL);
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(r->json, "payments"), k, p)
            {
                seen++;
                paid_sum += bx_jint(p, "amount");
                if (!has_i64(acked, x->npaid, bx_jint(p, "paymentId")))
                    extra++;
                cr_assert(has_i64(x->requested, x->nrequested, bx_jint(p, "reservationId")),
                          "worker %d: payment %lld for reservation %lld that was never requested", i,
                          (long long)bx_jint(p, "paymentId"), (long long)bx_jint(p, "reservationId"));
            }
            if (bx_jnull(r->json, "nextBefore") || !json_is_integer(json_object_get(r->json, "nextBefore")))
                break;
            snprintf(before, sizeof before, "&before=%lld", (long long)bx_jint(r->json, "nextBefore"));
        }
        history += seen;
        missing += x->npaid - (seen - extra);
        cr_assert_eq(seen - extra, x->npaid, "worker %d: %d acknowledged payments, %d of them in the history", i,
                     x->npaid, seen - extra);
        int64_t bal = bx_balance(&C, x->u.at);
        cr_assert_eq(bal, x->charged - paid_sum, "worker %d: balance %lld, acknowledged charges %lld - payments %lld",
                     i, (long long)bal, (long long)x->charged, (long long)paid_sum);
        free(acked);
    }
    printf(
        "figure: SIGKILL of instance B under load through nginx (%d clients charging, holding, paying): %d requests, "
        "%d failed in flight (502/transport) and were retried with the same request / Idempotency-Key, %d holds "
        "found as our own after a lost answer; answered OK: both up A %d / B %d, B down A %d / B %d, B back A %d / "
        "B %d; B down %lld ms, restarted and ready in %lld ms (readyz %ld on its own port), back in nginx's rotation "
        "%lld ms after the restart\n",
        KW, requests, failed, adopted, ok_by[0][0], ok_by[0][1], ok_by[1][0], ok_by[1][1], ok_by[2][0], ok_by[2][1],
        (long long)down_ms, (long long)restart_ms, ready, (long long)rejoin_ms);
    printf("payments: %d acknowledged, %d in the history, %d missing, %d never acknowledged; %d charges, %d holds\n",
           payments, history, missing, extra, charges, holds);
    fflush(stdout);
    for (int i = 0; i < KW; i++) {
        free(w[i].paid);
        free(w[i].requested);
    }
    free(w);
    cr_assert_eq(ready, 200, "restarted instance B not ready on its own port");
    cr_assert(ok_by[1][0] > 0, "nothing was served by A while B was down");
    cr_assert(ok_by[2][1] > 0, "B served nothing after it came back");
    cr_assert_eq(missing, 0);
    cr_assert_eq(extra, 0, "%d payments in the history were never acknowledged to a client", extra);
    expect_audit_clean("after an instance was killed under load");
    printf("audit: clean against PostgreSQL after SIGKILL of one instance under load\n");
    fflush(stdout);
}

/* ------------------------------------------------------------ (d) FIFO across instances */

Test(scaleout, tokens_issued_alternately_through_both_instances_are_admitted_in_issue_order)
{
    enum { N = 12 };
    START("--active-max", "1");
    int64_t cid = bx_admin_concert(&C, "One line, two doors");
    struct user *users = make_users("fifo", N + 1, 0);
    struct bx_client via[2];
    bx_client_init_instance(&via[0], &srv, 0);
    bx_client_init_instance(&via[1], &srv, 1);
    const char *path = bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid);

    /* users[0] takes the only slot; users 1..N queue alternately through A and B */
    for (int i = 0; i <= N; i++) {
        struct bx_client *c = &via[i % 2];
        struct bx_resp *r = bx_http(c, "POST", path, &(struct bx_req){.bearer = users[i].at});
        bx_expect(r, 201, NULL);
        cr_assert_str_eq(bx_jstr(r->json, "status"), i == 0 ? "ACTIVE" : "WAITING", "user %d via %c: %s", i,
                         'A' + i % 2, r->body);
        cr_assert_eq(bx_jint(r->json, "position"), i, "user %d via %c: %s", i, 'A' + i % 2, r->body);
        snprintf(users[i].qt, sizeof users[i].qt, "%s", bx_jstr(r->json, "token"));
    }

    int in_order = 0;
    int64_t total_wait = 0, worst_wait = 0;
    for (int k = 0; k < N; k++) {
        /* the ACTIVE one leaves through one instance ... */
        struct bx_resp *r = bx_http(&via[k % 2], "DELETE", "/api/v1/queue/tokens/current",
                                    &(struct bx_req){.bearer = users[k].at, .queue_token = users[k].qt});
        bx_expect(r, 204, NULL);
        int64_t t0 = bx_now_ms();
        /* ... and the next in issue order is admitted, seen from the other */
        int next = k + 1;
        for (;;) {
            r = bx_http(&via[(k + 1) % 2], "GET", "/api/v1/queue/status",
                        &(struct bx_req){.bearer = users[next].at, .queue_token = users[next].qt});
            bx_expect(r, 200, NULL);
            if (strcmp(bx_jstr(r->json, "status"), "ACTIVE") == 0)
                break;
            cr_assert(bx_now_ms() - t0 < 5000, "user %d not admitted within 5 s after user %d left: %s", next, k,
                      r->body);
            bx_sleep_ms(10);
        }
        int64_t waited = bx_now_ms() - t0;
        total_wait += waited;
        worst_wait = waited > worst_wait ? waited : worst_wait;
        /* nobody behind was admitted instead, and everyone moved up by one */
        for (int j = next + 1; j <= N; j++) {
            r = bx_http(&via[j % 2], "GET", "/api/v1/queue/status",
                        &(struct bx_req){.bearer = users[j].at, .queue_token = users[j].qt});
            bx_expect(r, 200, NULL);
            cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING", "user %d admitted before user %d: %s", j, next,
                             r->body);
            cr_assert_eq(bx_jint(r->json, "position"), j - next, "user %d via %c: %s", j, 'A' + j % 2, r->body);
        }
        in_order++;
    }
    printf("figure: FIFO across instances: %d tokens issued alternately through A and B behind one ACTIVE token "
           "(--active-max 1), admitted in issue order %d/%d as each slot was freed; admission seen %lld ms after "
           "the leave on average (worst %lld ms)\n",
           N, in_order, N, (long long)(total_wait / N), (long long)worst_wait);
    fflush(stdout);
    bx_client_release(&via[0]);
    bx_client_release(&via[1]);
    free(users);
}

/* ------------------------------------------------------------ harness guarantees */

Test(scaleout, both_instances_share_one_database_one_queue_and_one_token_secret)
{
    START();
    struct bx_client a, b;
    bx_client_init_instance(&a, &srv, 0);
    bx_client_init_instance(&b, &srv, 1);
    /* signed up on A, logged in on B, the token works on both */
    bx_expect(bx_http_json(&a, "POST", "/api/v1/users", NULL,
                           json_pack("{s:s,s:s}", "name", "shared", "password", BX_PASSWORD)),
              201, NULL);
    struct bx_resp *r = bx_http_json(&b, "POST", "/api/v1/sessions", NULL,
                                     json_pack("{s:s,s:s}", "name", "shared", "password", BX_PASSWORD));
    bx_expect(r, 200, NULL);
    const char *at = bx_str(&C, "%s", bx_jstr(r->json, "accessToken"));
    bx_expect(bx_http_json(&a, "POST", "/api/v1/users/me/balance/charge", &(struct bx_req){.bearer = at},
                           json_pack("{s:i}", "amount", 700)),
              200, NULL);
    r = bx_http(&b, "GET", "/api/v1/users/me/balance", &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(r->json, "balance"), 700, "%s", r->body);
    /* a queue token issued on B is the same token when re-issued on A */
    int64_t cid = bx_admin_concert(&C, "Shared");
    const char *path = bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid);
    struct bx_resp *t1 = bx_http(&b, "POST", path, &(struct bx_req){.bearer = at});
    bx_expect(t1, 201, NULL);
    struct bx_resp *t2 = bx_http(&a, "POST", path, &(struct bx_req){.bearer = at});
    bx_expect(t2, 200, NULL);
    cr_assert_str_eq(bx_jstr(t1->json, "token"), bx_jstr(t2->json, "token"));
    /* nginx spreads requests over both */
    int by[2] = {0, 0};
    for (int i = 0; i < 20; i++) {
        r = bx_http(&C, "GET", "/healthz", NULL);
        bx_expect(r, 200, NULL);
        int k = served_by(r);
        cr_assert(k >= 0, "X-Upstream \"%s\" names no instance", r->upstream);
        by[k]++;
    }
    printf("figure: 20 requests through nginx: A answered %d, B %d\n", by[0], by[1]);
    fflush(stdout);
    cr_assert(by[0] > 0 && by[1] > 0, "nginx used one instance only: A %d, B %d", by[0], by[1]);
    bx_client_release(&a);
    bx_client_release(&b);
}

Test(scaleout, a_users_rate_limit_is_one_budget_over_both_instances)
{
    START("--rate-limit", "1", "--rate-burst", "4");
    struct bx_client a, b;
    bx_client_init_instance(&a, &srv, 0);
    bx_client_init_instance(&b, &srv, 1);
    const char *at = bx_user(&C, "hasty", NULL);
    /* 24 charges at once, alternately through each instance: with a bucket per
     * instance, 8 would pass before the first refill */
    int allowed = 0, refused = 0;
    int64_t t0 = bx_now_ms();
    for (int i = 0; i < 24; i++) {
        struct bx_client *via = i % 2 ? &b : &a;
        struct bx_resp *r = bx_http_json(via, "POST", "/api/v1/users/me/balance/charge", &(struct bx_req){.bearer = at},
                                         json_pack("{s:i}", "amount", 1));
        if (r->status == 200) {
            allowed++;
            continue;
        }
        bx_expect(r, 429, "RATE_LIMITED");
        char retry[16];
        cr_assert_not_null(bx_header(r, "retry-after", retry, sizeof retry), "a 429 says when to retry");
        cr_assert(atoi(retry) >= 1 && atoi(retry) <= 2, "Retry-After %s", retry);
        refused++;
    }
    int64_t ms = bx_now_ms() - t0;
    printf("figure: 24 charges in %lld ms over two instances at 1/s, burst 4: %d allowed, %d refused\n",
           (long long)ms, allowed, refused);
    fflush(stdout);
    cr_assert(ms < 2000, "the charges took %lld ms: too slow to judge the budget", (long long)ms);
    cr_assert(allowed >= 4 && allowed <= 4 + ms / 1000 + 1,
              "%d charges allowed in %lld ms: the burst of 4 is the budget of the user, not of each instance", allowed,
              (long long)ms);
    cr_assert_eq(bx_balance(&C, at), allowed, "a refused charge moved nothing");
    /* the budget comes back at the rate, through either instance */
    bx_sleep_ms(1100);
    bx_expect(bx_http_json(&b, "POST", "/api/v1/users/me/balance/charge", &(struct bx_req){.bearer = at},
                           json_pack("{s:i}", "amount", 1)),
              200, NULL);
    bx_client_release(&a);
    bx_client_release(&b);
}

/* The compact availability of schedule sid as instance k shows it (NULL: no map). */
static const char *availability_on(struct bx_client *k, const struct user *u, int64_t sid)
{
    struct bx_resp *r = bx_http(k, "GET", bx_str(k, "/api/v1/schedules/%lld/seats?format=compact", (long long)sid),
                                &(struct bx_req){.bearer = u->at, .queue_token = u->qt});
    return r->status == 200 ? bx_str(k, "%s", bx_jstr(r->json, "availability")) : NULL;
}

Test(scaleout, a_hold_made_through_one_instance_shows_at_once_in_the_other_instances_seat_map_and_dates)
{
    START();
    int64_t cid = bx_admin_concert(&C, "Two instances, one map");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 5000);
    struct user *u = make_users("viewer", 1, cid);
    struct bx_client a, b;
    bx_client_init_instance(&a, &srv, 0);
    bx_client_init_instance(&b, &srv, 1);
    /* both instances have served the map before the hold: neither may answer from
     * what it saw then */
    cr_assert_str_eq(availability_on(&a, u, sid), "1111111111");
    cr_assert_str_eq(availability_on(&b, u, sid), "1111111111");
    struct bx_req q = {.bearer = u->at, .queue_token = u->qt};
    struct bx_resp *r = bx_http_json(&a, "POST", "/api/v1/reservations", &q,
                                     json_pack("{s:I,s:i}", "scheduleId", (json_int_t)sid, "seatNo", 3));
    bx_expect(r, 201, NULL);
    /* the next reads, through either instance, show the hold: the answer came first */
    cr_assert_str_eq(availability_on(&b, u, sid), "1101111111", "instance B shows a seat held through A as free");
    cr_assert_str_eq(availability_on(&a, u, sid), "1101111111");
    r = bx_http(&b, "GET", bx_str(&b, "/api/v1/concerts/%lld/schedules", (long long)cid), &q);
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(json_array_get(json_object_get(r->json, "schedules"), 0), "availableSeats"), 9, "%s",
                 r->body);
    bx_client_release(&a);
    bx_client_release(&b);
    free(u);
    expect_audit_clean("after holding through one instance and reading through the other");
}
